"""`tfp_flows.bijectors.Permute`: TFP's `tfb.Permute` without scatters in its graph."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_flows.bijectors as tffb

tfb = tfp.bijectors


def _values_and_gradients(bijector, x, weights):
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = bijector.forward(x)
        back = bijector.inverse(y * 1.5)
        loss_y = tf.reduce_sum(y * weights)
        loss_back = tf.reduce_sum(back * weights)
    return y, back, tape.gradient(loss_y, x), tape.gradient(loss_back, x)


@pytest.mark.parametrize("permutation", [[1, 0], [3, 1, 0, 2], [4, 3, 2, 1, 0], [0, 1, 2]])
@pytest.mark.parametrize("jit", [False, True])
def test_same_maps_and_gradients_as_tfp(permutation, jit):
    d = len(permutation)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(5, d)), tf.float32)
    weights = tf.constant(rng.normal(size=(5, d)), tf.float32)
    ours, theirs = tffb.Permute(permutation), tfb.Permute(permutation)
    fn = tf.function(_values_and_gradients, jit_compile=True) if jit else _values_and_gradients
    for a, b in zip(fn(ours, x, weights), fn(theirs, x, weights), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert np.all(ours.forward_log_det_jacobian(x, event_ndims=1).numpy() == 0.0)
    assert isinstance(ours, tfb.Permute)


def test_compiled_gradient_has_no_scatter():
    x = tf.constant(np.random.default_rng(1).normal(size=(8, 4)), tf.float32)

    def grad_of(bijector):
        @tf.function(jit_compile=True)
        def grad(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(tf.sin(bijector.inverse(bijector.inverse(x))))
            return tape.gradient(loss, x)
        return grad.experimental_get_compiler_ir(x)(stage="hlo")

    assert " scatter(" in grad_of(tfb.Permute([3, 1, 0, 2]))  # what is removed
    assert " scatter(" not in grad_of(tffb.Permute([3, 1, 0, 2]))


def test_dynamic_permutation_falls_back_to_tfp():
    permutation = tf.Variable([2, 0, 1])
    bijector = tffb.Permute(permutation)
    x = tf.constant([[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(bijector.forward(x).numpy(), [[3.0, 1.0, 2.0]])
    np.testing.assert_array_equal(bijector.inverse(bijector.forward(x)).numpy(), x.numpy())
    permutation.assign([1, 2, 0])
    np.testing.assert_array_equal(bijector.forward(x).numpy(), [[2.0, 3.0, 1.0]])
