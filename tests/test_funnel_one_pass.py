"""Funnel maps compute their map and log-det in one pass (one MLP call), same values.

`ElementwiseAffine` and `ElementwiseSpline` leave the log-det of the point they just
mapped in TFP's cache, so the funnel's `log|det dz/dx_plus|` no longer runs the map's
MLP a second time. The reference is the earlier formulation: with the cache entry
not written, TFP calls the log-det methods, which evaluate the MLP again.
"""

import numpy as np
import pytest
import tensorflow as tf

from tfp_flows import testing
from tfp_flows.bijectors import funnel_maps
from tfp_flows.bijectors.funnel_maps import ElementwiseAffine, ElementwiseSpline
from tfp_flows.flows import funnels
from tfp_flows.nets import mlp as mlp_lib

F64 = tf.float64

MAPS = [
    lambda: ElementwiseSpline(3, 2, num_bins=4, bound=2.0, hidden_units=(8,), dtype=F64),
    lambda: ElementwiseSpline(3, 0, num_bins=4, bound=2.0, dtype=F64),
    lambda: ElementwiseAffine(3, 2, hidden_units=(8,), dtype=F64),
    lambda: ElementwiseAffine(3, 0, dtype=F64),
]


@pytest.fixture
def mlp_calls(monkeypatch):
    """Counts `MLP` calls while a test runs."""
    calls = []
    original = mlp_lib.MLP.call

    def counted(self, *args, **kwargs):
        calls.append(self.name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(mlp_lib.MLP, "call", counted)
    return calls


@pytest.mark.parametrize("make", MAPS)
def test_map_then_log_det_is_one_pass_with_the_fresh_values(make, mlp_calls):
    f = testing.perturb_weights(make(), scale=0.5)
    rng = np.random.default_rng(8)
    x = tf.constant(rng.standard_normal((2, 5, 3)) * 2.0, F64)  # partly outside the interval
    kw = ({"conditional_input": tf.constant(rng.standard_normal((2, 5, 2)), F64)}
          if f._conditional_size else {})
    for direction in ("inverse", "forward"):
        del mlp_calls[:]
        y = getattr(f, direction)(x, **kw)
        ldj = getattr(f, f"{direction}_log_det_jacobian")(x, event_ndims=1, **kw)
        assert len(mlp_calls) == (1 if f._conditional_size else 0)
        fresh = getattr(f, f"{direction}_log_det_jacobian")(tf.identity(x), event_ndims=1,
                                                            **kw)
        assert ldj.shape == fresh.shape == (2, 5)
        np.testing.assert_allclose(ldj, fresh, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(y, getattr(f, direction)(tf.identity(x), **kw), atol=1e-12)


@pytest.mark.parametrize("builder", [funnels.funnel_nsf, funnels.funnel_glow])
def test_funnel_loss_and_gradients_equal_the_two_pass_formulation_under_jit(
        builder, monkeypatch):
    flow = builder(8, latent_size=6)
    testing.perturb_weights(flow, scale=0.05, seed=3)
    x = tf.constant(np.random.default_rng(4).standard_normal((64, 8)), tf.float32)
    variables = flow.trainable_variables

    def loss_and_grads():
        @tf.function(jit_compile=True)
        def f(x):
            with tf.GradientTape() as tape:
                loss = -tf.reduce_mean(flow.log_prob(x))
            return loss, tape.gradient(loss, variables)
        return f(x)

    ours = loss_and_grads()
    monkeypatch.setattr(funnel_maps, "remember_ildj", lambda *args, **kwargs: None)
    theirs = loss_and_grads()
    np.testing.assert_allclose(ours[0].numpy(), theirs[0].numpy(), rtol=1e-6)
    for a, b in zip(ours[1], theirs[1], strict=True):
        # Float32 rounding, relative to the tensor's largest entry.
        assert np.max(np.abs(a - b)) <= 1e-5 * np.max(np.abs(b)) + 1e-7
