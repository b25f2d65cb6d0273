"""Small numerical helpers and constants shared by every family (one home each)."""

import math

import tensorflow as tf

LOG_TWO_PI = math.log(2.0 * math.pi)
HALF_LOG_TWO_PI = 0.5 * LOG_TWO_PI
# softplus(x + UNIT_SOFTPLUS_SHIFT) = 1 at x = 0: a zero-initialised network output
# gives a unit scale or slope.
UNIT_SOFTPLUS_SHIFT = math.log(math.e - 1.0)


def soft_clamp(log_scale, bound):
    """`bound * tanh(log_scale / bound)`: identity near 0, bounded by `bound` (None: no clamp).

    Keeps `exp(log_scale)` from overflowing or vanishing in training.
    """
    if bound is None:
        return log_scale
    return bound * tf.tanh(log_scale / bound)


def standard_normal_log_prob(u):
    """`log N(u; 0, I)` summed over the last axis."""
    return -0.5 * tf.reduce_sum(tf.square(u), axis=-1) - u.shape[-1] * HALF_LOG_TWO_PI


def diagonal_normal_log_prob(u, loc, log_scale):
    """`log N(u; loc, diag(exp(2 log_scale)))` summed over the last axis."""
    e = (u - loc) * tf.exp(-log_scale)
    return tf.reduce_sum(-0.5 * tf.square(e) - log_scale - HALF_LOG_TWO_PI, axis=-1)


def default_chunk_size(num_samples, max_chunk=100):
    """The largest divisor of `num_samples` not above `max_chunk` (importance sampling)."""
    for chunk in range(min(num_samples, max_chunk), 0, -1):
        if num_samples % chunk == 0:
            return chunk
    return 1
