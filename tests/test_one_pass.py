"""One-pass RealNVP / MAF layers: same density as TFP's classes, one conditioner call."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.bijectors import AffineCouplingConditioner, MADEConditioner
from tfp_flows.bijectors.conditioners import SplineCouplingConditioner
from tfp_flows.bijectors.one_pass import OnePassMaskedAutoregressiveFlow, OnePassRealNVP

tfb, tfd = tfp.bijectors, tfp.distributions


class Counting:
    """Wraps a conditioner and counts its calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def _perturb(module, seed=0):
    rng = np.random.default_rng(seed)
    for v in module.trainable_variables:
        v.assign(v + 0.3 * rng.standard_normal(v.shape).astype(np.float32))


def _pair(kind):
    if kind == "maf":
        cond = MADEConditioner(3, hidden_units=(8,))
        _perturb(cond)
        counting = Counting(cond)
        return (OnePassMaskedAutoregressiveFlow(shift_and_log_scale_fn=counting),
                tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=cond), counting)
    if kind == "affine":
        cond = AffineCouplingConditioner(1, 2, hidden_units=(8,))
        _perturb(cond)
        counting = Counting(cond)
        return (OnePassRealNVP(num_masked=1, shift_and_log_scale_fn=counting),
                tfb.RealNVP(num_masked=1, shift_and_log_scale_fn=cond), counting)
    cond = SplineCouplingConditioner(1, 2, num_bins=4, bound=3.0, hidden_units=(8,))
    _perturb(cond)
    counting = Counting(cond)
    return (OnePassRealNVP(num_masked=1, bijector_fn=counting),
            tfb.RealNVP(num_masked=1, bijector_fn=cond), counting)


@pytest.mark.parametrize("kind", ["maf", "affine", "spline"])
def test_same_density_as_tfp_with_one_conditioner_call(kind):
    ours, theirs, counting = _pair(kind)
    x = tf.constant(np.random.default_rng(1).standard_normal((16, 3)) * 2, tf.float32)
    base = tfd.MultivariateNormalDiag(tf.zeros(3))
    lp_theirs = tfd.TransformedDistribution(base, theirs).log_prob(x)
    lp_ours = tfd.TransformedDistribution(base, ours).log_prob(x)
    assert counting.calls == 1
    np.testing.assert_allclose(lp_ours.numpy(), lp_theirs.numpy(), rtol=1e-5, atol=1e-5)
    # Without a preceding inverse the log-det methods are TFP's (one more call).
    ildj = ours.inverse_log_det_jacobian(tf.identity(x), event_ndims=1)
    np.testing.assert_allclose(ildj.numpy(), theirs.inverse_log_det_jacobian(x, 1).numpy(),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["affine", "spline"])
def test_coupling_forward_caches_its_log_det(kind):
    ours, theirs, counting = _pair(kind)
    x = tf.constant(np.random.default_rng(2).standard_normal((8, 3)), tf.float32)
    y = ours.forward(x)
    fldj = ours.forward_log_det_jacobian(x, event_ndims=1)
    assert counting.calls == 1
    np.testing.assert_allclose(y.numpy(), theirs.forward(x).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fldj.numpy(), theirs.forward_log_det_jacobian(x, 1).numpy(),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.inverse(y).numpy(), x.numpy(), rtol=1e-4, atol=1e-4)


def test_gradients_match_tfp_under_jit():
    ours, theirs, _ = _pair("affine")
    base = tfd.MultivariateNormalDiag(tf.zeros(3))
    x = tf.constant(np.random.default_rng(3).standard_normal((32, 3)), tf.float32)
    variables = ours.trainable_variables

    def grads(bij):
        @tf.function(jit_compile=True)
        def f(x):
            with tf.GradientTape() as tape:
                loss = -tf.reduce_mean(tfd.TransformedDistribution(base, bij).log_prob(x))
            return tape.gradient(loss, variables)
        return f(x)

    for a, b in zip(grads(ours), grads(theirs), strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
