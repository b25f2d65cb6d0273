"""Conditional latent-variable families (LGF / CIF, augmentation): p(x | c) per the contract."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_flows as tff
from tfp_flows import bijectors as tffb
from tfp_flows import flows
from tfp_flows.distributions import (
    LGF,
    Augmented,
    GaussianProposal,
    importance_sampled_log_prob,
)
from tfp_flows.distributions import sample as contract_sample
from tfp_flows.distributions.importance import resolve_chunk_size
from tfp_flows.internal import contract
from tfp_flows.keras import FlowModel
from tfp_flows.nets.gaussian import GaussianHead

tfb, tfd = tfp.bijectors, tfp.distributions

C = 2
SMALL = {
    "lgf_maf": dict(num_layers=2, hidden_units=(8,), st_hidden_units=(4,),
                    prior_hidden_units=(8,), posterior_hidden_units=(8,)),
    "lgf_real_nvp": dict(num_layers=2, hidden_units=(8,), st_hidden_units=(4,),
                         prior_hidden_units=(8,), posterior_hidden_units=(8,)),
    "lgf_coupling": dict(num_layers=2, hidden_units=(8,), prior_hidden_units=(8,),
                         posterior_hidden_units=(8,), index_mode="coupling"),
    "augmented_real_nvp": dict(num_augment=2, num_layers=2, hidden_units=(8,),
                               proposal="gaussian", proposal_kwargs={"hidden_units": (8,)}),
    "marginalizing_flow": dict(num_augment=1, num_blocks=1, hidden_units=(8,),
                               proposal="gaussian", proposal_kwargs={"hidden_units": (8,)}),
}
BUILDERS = {"lgf_coupling": "lgf_real_nvp"}


def build(key, event_size=2, conditional_size=C, **kwargs):
    name = BUILDERS.get(key, key)
    return getattr(flows, name)(event_size, conditional_size=conditional_size,
                                **{**SMALL[key], **kwargs})


def xc(n=5, event_size=2, seed=0):
    rng = np.random.default_rng(seed)
    return (tf.constant(rng.standard_normal((n, event_size)), tf.float32),
            tf.constant(rng.standard_normal((n, C)), tf.float32))


@pytest.mark.parametrize("key", list(SMALL))
def test_conditional_estimates_have_batch_shape_and_are_finite(key):
    dist = build(key)
    assert dist.conditional_size == C and contract.conditional_size(dist) == C
    assert contract.takes_seed(dist)
    x, c = xc()
    for value in (dist.elbo(x, seed=(1, 2), conditional_input=c),
                  dist.importance_weighted_bound(x, 3, seed=(1, 2), conditional_input=c),
                  dist.log_prob(x, num_samples=6, seed=(1, 2), conditional_input=c),
                  dist.elbo(x, seed=(1, 2), conditional_input=c[0]),  # [C]: shared by rows
                  contract.log_prob(dist, x, c, seed=(3, 4), num_samples=4)):
        assert value.shape == (5,) and np.all(np.isfinite(value))
    x3 = tf.reshape(tf.tile(x, [2, 1]), [2, 5, 2])
    c3 = tf.reshape(tf.tile(c, [2, 1]), [2, 5, C])
    assert dist.log_prob(x3, num_samples=4, seed=(0, 1), conditional_input=c3).shape == (2, 5)


@pytest.mark.parametrize("key", list(SMALL))
def test_sample_takes_one_condition_or_one_per_sample(key):
    dist = tff.testing.perturb_weights(build(key), scale=0.1)
    _, c = xc(4)
    assert dist.sample(4, seed=(1, 2), conditional_input=c[0]).shape == (4, 2)
    per_row = dist.sample(4, seed=(1, 2), conditional_input=c)
    assert per_row.shape == (4, 2) and np.all(np.isfinite(per_row))
    via = contract_sample(dist, 4, conditional_input=c, seed=(1, 2))
    assert via.shape == (4, 2) and np.all(np.isfinite(via))
    assert contract_sample(dist, [2, 3], conditional_input=c[0], seed=(5, 6)).shape == (2, 3, 2)
    # The same seed and noise, another condition: other samples.
    other = contract_sample(dist, 4, conditional_input=c + 1.0, seed=(1, 2))
    assert not np.allclose(via, other)


@pytest.mark.parametrize("key", list(SMALL))
def test_changing_the_condition_changes_log_prob_and_seeds_are_used(key):
    dist = tff.testing.perturb_weights(build(key), scale=0.1)
    x, c = xc()
    a = dist.log_prob(x, num_samples=4, seed=(1, 2), conditional_input=c).numpy()
    b = dist.log_prob(x, num_samples=4, seed=(1, 2), conditional_input=c + 1.0).numpy()
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(b))
    assert np.max(np.abs(a - b)) > 1e-3
    # Stateless: the same seed gives the same estimate, another seed another one.
    np.testing.assert_array_equal(
        a, dist.log_prob(x, num_samples=4, seed=(1, 2), conditional_input=c))
    e1 = dist.elbo(x, seed=(7, 7), conditional_input=c).numpy()
    np.testing.assert_array_equal(e1, dist.elbo(x, seed=(7, 7), conditional_input=c))
    assert not np.allclose(e1, dist.elbo(x, seed=(7, 8), conditional_input=c))


@pytest.mark.parametrize("key", ["lgf_maf", "lgf_real_nvp", "lgf_coupling", "augmented_real_nvp",
                                 "marginalizing_flow"])
def test_gradient_reaches_every_weight_with_a_condition(key):
    dist = tff.testing.perturb_weights(build(key), scale=0.1)
    weights = tff.testing.keras_weights(dist)
    assert len(weights) == len(dist.trainable_variables)
    x, c = xc(16)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(dist.elbo(x, seed=(1, 2), conditional_input=c))
    for w, g in zip(weights, tape.gradient(loss, weights), strict=True):
        assert g is not None, w.path
        assert np.all(np.isfinite(g)) and np.any(np.asarray(g) != 0), w.path


@pytest.mark.parametrize("key,conditional_size", [("lgf_maf", C), ("augmented_real_nvp", C),
                                                  ("augmented_real_nvp", 0)])
def test_scalar_target(key, conditional_size):
    kwargs = {"num_augment": 1} if key == "augmented_real_nvp" else {}
    dist = tff.testing.perturb_weights(
        build(key, event_size=1, conditional_size=conditional_size, **kwargs), scale=0.1)
    y, c = xc(6, event_size=1)
    c = c if conditional_size else None
    assert dist.event_shape == (1,)
    elbo = dist.elbo(y, seed=(1, 2), conditional_input=c)
    assert elbo.shape == (6,) and np.all(np.isfinite(elbo))
    c0 = None if c is None else c[0]
    assert dist.sample(3, seed=(0, 1), conditional_input=c0).shape == (3, 1)


# -- exact checks ------------------------------------------------------------------


@pytest.mark.parametrize("key", ["lgf_maf", "lgf_coupling"])
def test_conditional_dirac_stack_is_its_flow_at_zero_index(key):
    lgf = tff.testing.perturb_weights(build(key, event_size=3, dirac=True, dtype="float64"),
                                      scale=0.3)
    assert lgf.log_prob_kind == "exact"
    rng = np.random.default_rng(1)
    x = tf.constant(rng.standard_normal((4, 3)))
    c = rng.standard_normal((4, C))
    # The flow of the layers at index u = 0: each layer gets [0, c_i] (one condition per row).
    index = np.concatenate([np.zeros((4, lgf.index_size)), c], axis=1)
    flow = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(3, tf.float64)),
                                       tfb.Chain(lgf.layers))
    expected = contract.log_prob(flow, x, conditional_input=tf.constant(index)).numpy()
    assert not np.allclose(expected, contract.log_prob(
        flow, x, conditional_input=tf.constant(index + 1.0)))
    for value in (lgf.elbo(x, seed=(1, 2), conditional_input=c),
                  lgf.log_prob(x, num_samples=3, seed=(1, 2), conditional_input=c)):
        np.testing.assert_allclose(value, expected, rtol=1e-10)


class _ConditionalShift(tfb.Bijector):
    """`y = x + c W`: a conditional shift (constant Jacobian)."""

    def __init__(self, w):
        super().__init__(forward_min_event_ndims=1, is_constant_jacobian=True,
                         dtype=tf.float64, name="conditional_shift")
        self._w = tf.constant(w)
        contract.mark_conditional(self, w.shape[0])

    def _forward(self, x, conditional_input=None):
        return x + tf.matmul(conditional_input, self._w)

    def _inverse(self, y, conditional_input=None):
        return y - tf.matmul(conditional_input, self._w)

    def _forward_log_det_jacobian(self, x, conditional_input=None):
        return tf.zeros([], tf.float64)


def test_conditional_linear_gaussian_with_exact_proposal_is_exact():
    # (x, eps) = L z + c W: x | c ~ N(c W_x, S_xx), eps | x, c ~ N(c W_e + G (x - c W_x), P).
    chol = np.array([[1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.8, -0.3, 0.7]])
    w = np.array([[2.0, -1.0, 0.5], [0.3, 4.0, -2.0]])
    flow = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(3, tf.float64)),
                                       tfb.Chain([_ConditionalShift(w),
                                                  tfb.ScaleMatvecTriL(tf.constant(chol))]))
    cov = chol @ chol.T
    gain = cov[2:, :2] @ np.linalg.inv(cov[:2, :2])
    post_var = (cov[2:, 2:] - gain @ cov[2:, :2].T)[0, 0]
    q = GaussianProposal(2, 1, hidden_units=(), conditional_size=C, dtype=tf.float64)
    assert isinstance(q.head, GaussianHead) and q.conditional_size == C
    kernel = np.zeros((2 + C, 2))
    kernel[:2, 0] = gain[0]
    kernel[2:, 0] = w[:, 2] - w[:, :2] @ gain[0]
    raw = q.log_scale_bound * np.arctanh(0.5 * np.log(post_var) / q.log_scale_bound)
    q.net.set_weights([kernel, np.array([0.0, raw])])
    dist = Augmented(flow, 2, 1, proposal=q, conditional_size=C)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((6, 2)) * 3.0)
    c = rng.standard_normal((6, C)) * 2.0  # one condition per row: a wrong layout mixes them
    exact = tfd.MultivariateNormalTriL(c @ w[:, :2], np.linalg.cholesky(cov[:2, :2])).log_prob(x)
    assert np.ptp(exact) > 10.0
    for value in (dist.elbo(x, seed=(1, 1), conditional_input=c),
                  dist.importance_weighted_bound(x, 3, seed=(2, 2), conditional_input=c),
                  dist.log_prob(x, num_samples=12, chunk_size=4, seed=(3, 3),
                                conditional_input=c),
                  dist.log_prob(x, num_samples=7, seed=(4, 4), conditional_input=c)):
        np.testing.assert_allclose(value, exact, atol=1e-9)
    # Under XLA too (its noise differs from eager; with q exact every weight is p(x | c)).
    jit = tf.function(lambda x, c: dist.log_prob(x, num_samples=6, chunk_size=3, seed=(5, 5),
                                                 conditional_input=c), jit_compile=True)
    np.testing.assert_allclose(jit(x, tf.constant(c)), exact, atol=1e-9)


def test_continuously_indexed_with_a_conditional_inner_flow_against_autodiff():
    g = flows.maf(3, 1, hidden_units=(8,), conditional_size=C, dtype=tf.float64).bijector
    layer = tffb.ContinuouslyIndexed(3, 2, g, hidden_units=(8,), activation="tanh",
                                     conditional_size=C, dtype=tf.float64)
    assert layer.conditional_size == 2 + C and layer.outer_conditional_size == C
    tff.testing.perturb_weights(layer, scale=0.5)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((6, 3)))
    uc = tf.constant(rng.standard_normal((6, 2 + C)))
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = layer.inverse(tf.identity(x), conditional_input=uc)
    jac = tape.batch_jacobian(z, x).numpy()
    ildj = layer.inverse_log_det_jacobian(x, event_ndims=1, conditional_input=uc).numpy()
    np.testing.assert_allclose(ildj, np.linalg.slogdet(jac)[1], rtol=1e-10, atol=1e-10)
    # log|det DG| = log|det Dg(x; c)| + sum_i log s_i(u, c): the inner flow sees c.
    _, log_s = layer.shift_and_log_scale(uc)
    inner = g.inverse_log_det_jacobian(x, event_ndims=1,
                                       **contract.route(g, uc[:, 2:])).numpy()
    np.testing.assert_allclose(ildj - inner, np.sum(log_s, -1), atol=1e-10)
    np.testing.assert_allclose(layer.forward(tf.identity(z), conditional_input=uc), x,
                               atol=1e-10)


# -- consolidation, chunks, initialisation -------------------------------------------


def test_one_gaussian_head_and_one_chunk_rule():
    lgf = build("lgf_maf")
    assert all(isinstance(h, GaussianHead) for h in lgf.priors + lgf.posteriors)
    assert lgf.priors[0].conditional_size == C
    assert [resolve_chunk_size(s) for s in (7, 100, 150, 250, 101)] == [7, 100, 75, 50, 1]
    assert resolve_chunk_size(1000, max_chunk=300) == 250
    assert resolve_chunk_size(12, 4) == 4
    seen = []

    def log_w(x_rep, seed, c_rep):
        seen.append(x_rep.shape[0])
        return tf.zeros([x_rep.shape[0]], x_rep.dtype)

    # S = 150 (not a multiple of 100): chunks of 75, and log (1/S) sum_s 1 = 0.
    out = importance_sampled_log_prob(log_w, tf.zeros([3, 2]), 150, seed=(0, 1))
    np.testing.assert_allclose(out, 0.0, atol=1e-6)
    assert seen == [3 * 75, 3 * 75]  # eager: the loop body runs once per chunk


def test_non_divisor_chunk_size_raises_everywhere():
    x, c = xc(3)
    match = r"`num_samples` \(10\) must be a multiple of `chunk_size` \(3\)"
    for dist in (build("lgf_maf"), build("augmented_real_nvp")):
        with pytest.raises(ValueError, match=match):
            dist.log_prob(x, num_samples=10, chunk_size=3, seed=(0, 1), conditional_input=c)
    with pytest.raises(ValueError, match=match):
        importance_sampled_log_prob(lambda *a: None, x, 10, chunk_size=3)
    with pytest.raises(ValueError, match="`chunk_size` must be a positive integer; got 0"):
        resolve_chunk_size(10, 0)


def test_initialize_from_data_with_a_condition():
    dist = build("marginalizing_flow", proposal="standard_normal", proposal_kwargs=None)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((2000, 2)) * 3.0 + 5.0, tf.float32)
    c = tf.constant(rng.standard_normal((2000, C)), tf.float32)
    contract.initialize_from_data(dist, x, c)
    loc = dist.flow.bijector.bijectors[0]._params.variable("loc").numpy()
    np.testing.assert_allclose(loc, [5.0, 5.0, 0.0], atol=0.2)
    lgf = build("lgf_maf")
    lgf.initialize_from_data(x[:64], conditional_input=c[:64])
    with pytest.raises(ValueError, match="`conditional_input` is required"):
        lgf.initialize_from_data(x[:64])


# -- contract errors --------------------------------------------------------------------


@pytest.mark.parametrize("key", ["lgf_maf", "augmented_real_nvp"])
def test_missing_extra_and_wrong_size_conditions_raise(key):
    cond, plain = build(key), build(key, conditional_size=0)
    x, c = xc(3)
    calls = {
        "elbo": lambda d, c: d.elbo(x, seed=(0, 1), conditional_input=c),
        "iw": lambda d, c: d.importance_weighted_bound(x, 2, seed=(0, 1), conditional_input=c),
        "log_prob": lambda d, c: d.log_prob(x, num_samples=2, seed=(0, 1), conditional_input=c),
        "sample": lambda d, c: d.sample(3, seed=(0, 1), conditional_input=c),
        "init": lambda d, c: d.initialize_from_data(x, conditional_input=c),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match=r"`conditional_input` is required.*\[\.\.\., 2\]"):
            call(cond, None)
        with pytest.raises(ValueError, match=r"`conditional_input` must have shape \[\.\.\., 2\]"):
            call(cond, tf.zeros([3, 3]))
        with pytest.raises(ValueError, match="`conditional_input` must be None for an "
                                             "unconditional flow"):
            call(plain, c)
        assert name  # every entry point checks
    with pytest.raises(ValueError, match=r"\[n, C\] = \[4, C\] \(one per sample\); got 3"):
        cond.sample(4, seed=(0, 1), conditional_input=tf.zeros([3, C]))


def test_construction_errors_for_conditions():
    with pytest.raises(ValueError, match=r"`layers\[0\]` must take a `conditional_input` \[u, c\]"
                                         r" of size index_size \+ conditional_size = 3"):
        LGF([tffb.ContinuouslyIndexed(2, 1)], index_size=1, event_size=2, conditional_size=2)
    with pytest.raises(ValueError, match="`base` must be unconditional or take"):
        LGF([tffb.ContinuouslyIndexed(2, 1, conditional_size=2)], index_size=1,
            base=flows.real_nvp(2, 1, hidden_units=(4,), conditional_size=3),
            conditional_size=2)
    with pytest.raises(ValueError, match="`bijector` \\(g\\) must take the outer condition"):
        tffb.ContinuouslyIndexed(2, 1, flows.maf(2, 1, conditional_size=3).bijector,
                                 conditional_size=2)
    flow = flows.real_nvp(3, 1, hidden_units=(4,), conditional_size=2)
    with pytest.raises(ValueError, match="`flow` must take a `conditional_input` of size "
                                         "`conditional_size` = 1"):
        Augmented(flow, 2, 1, conditional_size=1)
    with pytest.raises(ValueError, match="`proposal` takes a `conditional_input` of size 3"):
        Augmented(flow, 2, 1, proposal=GaussianProposal(2, 1, conditional_size=3))
    with pytest.raises(ValueError, match="`conditional_size` must be a non-negative integer"):
        flows.lgf_maf(2, conditional_size=-1)
    with pytest.raises(ValueError, match="`conditional_size` must be a non-negative integer"):
        flows.augmented_real_nvp(2, conditional_size=-1)


# -- training through FlowModel -----------------------------------------------------------


@pytest.mark.parametrize("key,jit", [("lgf_maf", True), ("lgf_real_nvp", False),
                                     ("augmented_real_nvp", False), ("marginalizing_flow", False)])
def test_flow_model_trains_one_elbo_step_on_a_condition(key, jit):
    small = {**SMALL[key], **({"num_layers": 1} if "num_layers" in SMALL[key] else {})}
    model = FlowModel.from_flow(key, objective="elbo", event_size=2, conditional_size=C, **small)
    model.compile(keras.optimizers.Adam(1e-2), jit_compile=jit)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 2)).astype("float32")
    c = rng.standard_normal((64, C)).astype("float32")
    before = [w.numpy().copy() for w in model.trainable_weights]
    hist = model.fit({"x": x, "conditional_input": c}, batch_size=64, epochs=1, verbose=0)
    assert np.all(np.isfinite(hist.history["loss"]))
    assert any(not np.array_equal(b, w.numpy())
               for b, w in zip(before, model.trainable_weights, strict=True))
