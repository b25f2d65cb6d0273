"""The floor: a hand-written pure-TF training step for RealNVP and MAF.

No TFP, no Keras layers, no Keras optimizer: raw `tf.Variable`s, `tf.matmul`,
MADE masks as constants, a hand-written Adam update, all in one
`tf.function(jit_compile=True)`. Same maps as the library's flows (the same
permutations, input and log-scale soft clamps, MADE degrees), and its weights
are copied from a library flow, so its loss at those weights equals the
library's (`check_same_loss`). Timed against flowjax in `benchmarks/peers.py`
(`--floor`), it shows how much of the gap is TF/XLA on CPU itself and how
much is the graph the library (TFP bijectors, Keras layers, Keras' Adam) builds.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from tfp_flows.bijectors.one_pass import OnePassMaskedAutoregressiveFlow, OnePassRealNVP
from tfp_flows.testing.bijectors import keras_weights


def _clamp(x, bound):
    return x if bound is None else bound * tf.tanh(x / bound)


def _inverse_index(permute):
    """`idx` with `permute.inverse(y) == y[..., idx]`."""
    d = int(permute.permutation.shape[-1])
    return np.round(permute.inverse(tf.range(d, dtype=tf.float32)).numpy()).astype(np.int32)


def _copy(weights, holders):
    """Copies as `tf.Variable`s (held by Keras variables, `holders`, for `keras_adam`)."""
    new = [keras.Variable(np.array(w.numpy())) for w in weights]
    holders += new
    return [w.value for w in new]


def build_floor(distribution, learning_rate=1e-3, library_loss=False, keras_adam=False):
    """`(step, loss)` for a library RealNVP or MAF (`flows.real_nvp` / `flows.maf`, no
    condition): `step(x)` runs one Adam step and returns the loss before it.

    The two halves can be swapped for the library's, to see which one costs:
    `library_loss=True` differentiates `-mean(distribution.log_prob(x))` (the library's
    own variables) instead of the hand-written loss; `keras_adam=True` applies
    `keras.optimizers.Adam` instead of the hand-written update.
    """
    layers, variables, holders = [], [], []
    for b in distribution.bijector.bijectors:  # density order: data first
        if isinstance(b, OnePassRealNVP):
            cond = b._one_pass_affine
            kernels, biases = _copy(cond.net.kernels, holders), _copy(cond.net.biases, holders)
            layers.append(("coupling", b._one_pass_masked, kernels, biases,
                           cond._input_bound, cond._bound))
            variables += kernels + biases
        elif isinstance(b, OnePassMaskedAutoregressiveFlow):
            cond = b._one_pass_fn
            net = cond.net
            masks = [np.asarray(m) for m in net._masks]
            masks[-1] = np.repeat(masks[-1], net.params, axis=1)
            kernels, biases = _copy(net.kernels, holders), _copy(net.biases, holders)
            layers.append(("made", [tf.constant(m) for m in masks], kernels, biases,
                           cond._input_bound, cond._bound))
            variables += kernels + biases
        elif hasattr(b, "permutation"):
            layers.append(("permute", tf.constant(_inverse_index(b))))
        else:
            raise TypeError(f"build_floor: no floor for {type(b).__name__}")
    dim = int(distribution.event_shape[-1])
    const = -0.5 * dim * math.log(2 * math.pi)

    def mlp(h, kernels, biases, masks=None):
        for i, (k, b) in enumerate(zip(kernels, biases, strict=True)):
            h = tf.matmul(h, k if masks is None else k * masks[i]) + b
            if i < len(kernels) - 1:
                h = tf.nn.relu(h)
        return h

    def loss_fn(x):
        ldj = 0.0
        for layer in layers:
            if layer[0] == "permute":
                x = tf.gather(x, layer[1], axis=-1)
            elif layer[0] == "coupling":
                _, m, kernels, biases, in_bound, bound = layer
                x0, x1 = x[:, :m], x[:, m:]
                shift, log_scale = tf.split(mlp(_clamp(x0, in_bound), kernels, biases), 2, -1)
                log_scale = _clamp(log_scale, bound)
                x = tf.concat([x0, (x1 - shift) * tf.exp(-log_scale)], -1)
                ldj -= tf.reduce_sum(log_scale, -1)
            else:
                _, masks, kernels, biases, in_bound, bound = layer
                params = tf.reshape(mlp(_clamp(x, in_bound), kernels, biases, masks),
                                    [-1, dim, 2])
                log_scale = _clamp(params[..., 1], bound)
                x = (x - params[..., 0]) * tf.exp(-log_scale)
                ldj -= tf.reduce_sum(log_scale, -1)
        log_prob = const - 0.5 * tf.reduce_sum(x * x, -1) + ldj
        return -tf.reduce_mean(log_prob)

    if library_loss:
        variables = [w.value for w in keras_weights(distribution)]

        def loss_fn(x):  # noqa: F811 - the library's graph instead of the hand-written one
            return -tf.reduce_mean(distribution.log_prob(x))

    if keras_adam:
        optimizer = keras.optimizers.Adam(learning_rate)
        weights = keras_weights(distribution) if library_loss else holders
        optimizer.build(weights)  # slots first: one trace, one compile

        @tf.function(jit_compile=True)
        def keras_step(x):
            with tf.GradientTape() as tape:
                loss = loss_fn(x)
            grads = tape.gradient(loss, variables)
            optimizer.apply_gradients(zip(grads, weights, strict=True))
            return loss

        return keras_step, tf.function(loss_fn, jit_compile=True)

    ms = [tf.Variable(tf.zeros_like(v)) for v in variables]
    vs = [tf.Variable(tf.zeros_like(v)) for v in variables]
    t = tf.Variable(0.0)
    beta1, beta2, eps = 0.9, 0.999, 1e-7

    @tf.function(jit_compile=True)
    def step(x):
        with tf.GradientTape() as tape:
            loss = loss_fn(x)
        grads = tape.gradient(loss, variables)
        t.assign_add(1.0)
        lr = learning_rate * tf.sqrt(1 - beta2**t) / (1 - beta1**t)
        for v, m, s, g in zip(variables, ms, vs, grads, strict=True):
            m.assign(beta1 * m + (1 - beta1) * g)
            s.assign(beta2 * s + (1 - beta2) * g * g)
            v.assign_sub(lr * m / (tf.sqrt(s) + eps))
        return loss

    return step, tf.function(loss_fn, jit_compile=True)


def check_same_loss(distribution, floor_loss, x):
    """The library's loss and the floor's at the same weights (printed; they must agree)."""
    ours = float(-tf.reduce_mean(distribution.log_prob(x)))
    floor = float(floor_loss(x))
    print(f"loss at the same weights: library {ours:.7f}, floor {floor:.7f}", flush=True)
    if not abs(ours - floor) <= 1e-4 * max(1.0, abs(ours)):
        raise AssertionError(f"floor loss {floor} != library loss {ours}")
    return ours, floor
