"""LGF's density pass: one evaluation of every network per layer, same values as before.

`ContinuouslyIndexed.inverse` leaves its log-det in TFP's cache and `LGF` maps before
it asks for the log-det, so a layer's `s`/`t` MLP and its `g` run once. The reference
below is the earlier formulation: each log-det computed afresh (at a copy of the
point, which TFP's cache does not know), i.e. a second evaluation of the networks.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_flows as tff
from tfp_flows import bijectors as tffb
from tfp_flows import flows
from tfp_flows.internal import contract
from tfp_flows.nets import made as made_lib
from tfp_flows.nets import mlp as mlp_lib


def _reference_log_weight(lgf, x, seed, c=None):
    """`LGF._log_weight` with every layer's log-det evaluated separately from its map."""
    seed = tfp.random.sanitize_seed(seed)
    *seeds, base_seed = tfp.random.split_seed(seed, n=2 * len(lgf.layers) + 1, salt="lgf")
    z, total = x, 0.0
    for i, layer in enumerate(lgf.layers):
        u, log_q = lgf.posteriors[i].sample_and_log_prob(z, seeds[2 * i], c)
        kw = contract.route(layer, u if c is None else tf.concat([u, c], -1), seeds[2 * i + 1])
        ildj = layer.inverse_log_det_jacobian(tf.identity(z), event_ndims=1, **kw)
        z = layer.inverse(z, **kw)
        total = total + ildj + lgf.priors[i].log_prob(u, z, c) - log_q
    return total + contract.log_prob(lgf.base, z, c if contract.is_conditional(lgf.base)
                                     else None, seed=base_seed)


@pytest.fixture
def call_counts(monkeypatch):
    """Counts the calls of every `MLP` and `MADE` layer while a test runs."""
    counts = {"MLP": 0, "MADE": 0}
    for cls in (mlp_lib.MLP, made_lib.MADE):
        original = cls.call

        def counted(self, *args, _original=original, _name=cls.__name__, **kwargs):
            counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "call", counted)
    return counts


def _lgf(builder, conditional_size=0, **kwargs):
    lgf = builder(2, num_layers=3, hidden_units=(8,), st_hidden_units=(4,),
                  prior_hidden_units=(6,), posterior_hidden_units=(6,),
                  conditional_size=conditional_size, **kwargs)
    tff.testing.perturb_weights(lgf, scale=0.3, seed=1)
    return lgf


def test_layer_inverse_then_log_det_runs_each_network_once(call_counts):
    g = flows.maf(2, num_layers=1, hidden_units=(8,)).bijector
    layer = tffb.ContinuouslyIndexed(2, 2, bijector=g, hidden_units=(4,))
    tff.testing.perturb_weights(layer, scale=0.3, seed=2)
    rng = np.random.default_rng(3)
    y = tf.constant(rng.standard_normal((16, 2)), tf.float32)
    u = tf.constant(rng.standard_normal((16, 2)), tf.float32)
    z = layer.inverse(y, conditional_input=u)
    ildj = layer.inverse_log_det_jacobian(y, event_ndims=1, conditional_input=u)
    assert call_counts == {"MLP": 1, "MADE": 1}
    # The same values as a fresh log-det, and as its formula log|det Dg| + sum log s(u).
    fresh = layer.inverse_log_det_jacobian(tf.identity(y), event_ndims=1, conditional_input=u)
    _, log_scale = layer.shift_and_log_scale(u)
    formula = g.inverse_log_det_jacobian(tf.identity(y), 1) + tf.reduce_sum(log_scale, -1)
    np.testing.assert_allclose(ildj.numpy(), fresh.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ildj.numpy(), formula.numpy(), rtol=1e-6, atol=1e-6)
    shift, _ = layer.shift_and_log_scale(u)
    np.testing.assert_allclose(z.numpy(), (tf.exp(log_scale) * g.inverse(y) + shift).numpy(),
                               rtol=1e-6, atol=1e-6)


def test_elbo_runs_every_network_once_per_layer(call_counts):
    lgf = _lgf(flows.lgf_maf)
    x = tf.constant(np.random.default_rng(4).standard_normal((8, 2)), tf.float32)
    call_counts.update(MLP=0, MADE=0)
    lgf.elbo(x, seed=(1, 2))
    # Per layer: one MADE; the s/t MLP, the prior and the posterior (three MLPs).
    assert call_counts == {"MLP": 9, "MADE": 3}


@pytest.mark.parametrize("builder, kwargs, cond", [
    (flows.lgf_maf, {}, 0),
    (flows.lgf_maf, {}, 3),
    (flows.lgf_real_nvp, {}, 0),
    (flows.lgf_real_nvp, {"index_mode": "coupling"}, 0),
    (flows.lgf_real_nvp, {"index_mode": "coupling"}, 2),
])
def test_elbo_and_gradients_equal_the_separate_formulation_under_jit(builder, kwargs, cond):
    lgf = _lgf(builder, cond, **kwargs)
    rng = np.random.default_rng(5)
    x = tf.constant(rng.standard_normal((32, 2)), tf.float32)
    c = tf.constant(rng.standard_normal((32, cond)), tf.float32) if cond else None
    variables = lgf.trainable_variables
    seed = tf.constant([7, 8])

    def loss_and_grads(fn):
        @tf.function(jit_compile=True)
        def f(x):
            with tf.GradientTape() as tape:
                loss = -tf.reduce_mean(fn(x))
            return loss, tape.gradient(loss, variables)
        return f(x)

    ours = loss_and_grads(lambda x: lgf.elbo(x, seed=seed, conditional_input=c))
    theirs = loss_and_grads(lambda x: _reference_log_weight(lgf, x, seed, c))
    np.testing.assert_allclose(ours[0].numpy(), theirs[0].numpy(), rtol=1e-6)
    for a, b in zip(ours[1], theirs[1], strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
