"""Importance-sampled log-likelihood, evaluated in chunks.

For a latent-variable model with proposal q,

    log p(x) ~= logsumexp_s [log p(x, e_s) - log q(e_s | x)] - log S,  e_s ~ q.

The estimate is consistent as S grows and biased low for finite S (Jensen; it
is the S-sample importance-weighted bound, Burda et al. 2016). S = 1000 does
not fit in memory at once for real flows, so the S samples are drawn in
chunks and combined with a running logsumexp inside one `tf.while_loop` (static
trip count, so it compiles under XLA).

The layout trap (DESIGN.md 3.3): the batch is repeated with
`tf.repeat(x, k, axis=0)` (each row k times in a row), so the weights must be
reshaped to `[N, k]`, never `[k, N]`; otherwise samples of different data
points are averaged together.
"""

import math

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.internal import validation


def repeat_rows(x, k):
    """`[N, ...] -> [N * k, ...]`, row i repeated k times consecutively (pairs with `[N, k]`)."""
    return tf.repeat(x, k, axis=0)


def importance_sampled_log_prob(log_weight_fn, x, num_samples, seed=None, chunk_size=None,
                                conditional_input=None):
    """`log (1/S) sum_s exp(log_weight_fn(...))` per data point, S samples in chunks.

    Args:
      log_weight_fn: `fn(x_rep, seed, conditional_input_rep) -> [N * k]` log weights
        `log p(x, e) - log q(e | x)` for `x_rep = repeat_rows(x, k)`, one fresh
        sample per row.
      x: data, shape `[..., D]`.
      num_samples: S, the number of importance samples (>= 1).
      seed: stateless seed.
      chunk_size: samples per chunk (default `min(S, 100)`); S must be a
        multiple of it.
      conditional_input: optional `[..., C]`, repeated like `x`.

    Returns:
      The estimate, shape `x.shape[:-1]`.
    """
    num_samples = validation.positive_int(num_samples, "num_samples")
    chunk = min(num_samples, 100) if chunk_size is None else validation.positive_int(
        chunk_size, "chunk_size")
    if num_samples % chunk:
        raise ValueError(f"`num_samples` ({num_samples}) must be a multiple of `chunk_size` "
                         f"({chunk}).")
    num_chunks = num_samples // chunk
    batch_shape = tf.shape(x)[:-1]
    flat = tf.reshape(x, [-1, tf.shape(x)[-1]])
    cond = (None if conditional_input is None else
            repeat_rows(tf.reshape(conditional_input,
                                   [-1, tf.shape(conditional_input)[-1]]), chunk))
    x_rep = repeat_rows(flat, chunk)
    n = tf.shape(flat)[0]
    seeds = tfp.random.split_seed(seed, n=num_chunks, salt="importance_sampling")
    seeds = tf.stack(seeds) if num_chunks > 1 else tf.expand_dims(seeds[0], 0)

    def body(i, acc):
        log_w = tf.reshape(log_weight_fn(x_rep, seeds[i], cond), [n, chunk])
        return i + 1, tf.experimental.numpy.logaddexp(acc, tf.reduce_logsumexp(log_w, axis=1))

    init = tf.fill([n], tf.constant(-float("inf"), x.dtype))
    _, acc = tf.while_loop(lambda i, _: i < num_chunks, body, (0, init),
                           maximum_iterations=num_chunks)
    return tf.reshape(acc - math.log(num_samples), batch_shape)
