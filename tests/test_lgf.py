"""Localised generative flows: the layer map G, the LGF stack, its estimators and training."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import tfp_flows as tff
from tfp_flows import bijectors as tffb
from tfp_flows import datasets, flows
from tfp_flows.distributions import LGF
from tfp_flows.keras import FlowModel

tfd, tfb = tfp.distributions, tfp.bijectors

# A one-layer linear-Gaussian stack, per coordinate (everything is diagonal, D = U = 2):
#   z0 ~ N(0, 1),  u | z0 ~ N(A z0 + a, sig^2),  z0 = G(x; u) = s x + C u + c.
A, a, SIG = np.array([0.8, -0.5]), np.array([0.3, 0.1]), np.array([0.5, 1.2])
C, c, S = np.array([1.2, -0.7]), np.array([0.2, -0.3]), np.array([1.5, 0.7])


def _unclamp(value, bound):
    """The pre-activation whose soft clamp `bound * tanh(. / bound)` is `value`."""
    return bound * np.arctanh(value / bound)


def _linear_gaussian_moments():
    """Closed forms: x = ((1 - CA) z0 - C a - C sig e - c) / s is Gaussian, and so is u | x."""
    mean_x = -(C * a + c) / S
    var_x = ((1 - C * A) ** 2 + C**2 * SIG**2) / S**2
    var_u = A**2 + SIG**2
    cov_ux = (A * (1 - C * A) - C * SIG**2) / S
    gain = cov_ux / var_x
    return mean_x, var_x, gain, a - gain * mean_x, var_u - cov_ux**2 / var_x


def _set_dense(mlp, kernel_diag, bias):
    """Output `[diag(kernel_diag) x + bias[:D], bias[D:]]` from a no-hidden-layer MLP."""
    d = len(kernel_diag)
    kernel = np.zeros((d, 2 * d))
    kernel[:, :d] = np.diag(kernel_diag)
    mlp.set_weights([kernel, np.asarray(bias, np.float64)])


@pytest.fixture(scope="module")
def linear_gaussian():
    """The stack, with q(u | x) set to the exact posterior, and the exact marginal of x."""
    layer = tffb.ContinuouslyIndexed(2, 2, None, hidden_units=(), log_scale_bound=3.0,
                                     dtype=tf.float64)
    lgf = LGF([layer], index_size=2, event_size=2, prior_hidden_units=(),
              posterior_hidden_units=(), log_scale_bound=5.0, dtype=tf.float64)
    _set_dense(layer.net, C, np.concatenate([c, _unclamp(np.log(S), 3.0)]))
    _set_dense(lgf.priors[0].net, A, np.concatenate([a, _unclamp(np.log(SIG), 5.0)]))
    mean_x, var_x, gain, offset, var_post = _linear_gaussian_moments()
    _set_dense(lgf.posteriors[0].net, gain,
               np.concatenate([offset, _unclamp(0.5 * np.log(var_post), 5.0)]))
    exact = tfd.MultivariateNormalDiag(mean_x, np.sqrt(var_x))
    x = exact.sample(200, seed=(7, 8))
    return lgf, exact, x


def test_exact_posterior_makes_every_bound_exact(linear_gaussian):
    # With q = p(u | x) every importance weight equals p(x): log w = log p(x) for every u.
    lgf, exact, x = linear_gaussian
    expected = exact.log_prob(x).numpy()
    np.testing.assert_allclose(lgf.elbo(x, seed=(1, 2)), expected, atol=1e-10)
    np.testing.assert_allclose(lgf.log_prob(x, num_samples=20, seed=(3, 4)), expected, atol=1e-10)


def test_importance_sampling_converges_and_elbo_lies_below(linear_gaussian):
    lgf, exact, x = linear_gaussian
    # A poor proposal: q(u | x) = N(0, I) instead of the posterior (restored at the end).
    q = lgf.posteriors[0].net
    saved = [w.numpy() for w in q.weights]
    for w in q.weights:
        w.assign(np.zeros(w.shape))
    try:
        expected = exact.log_prob(x).numpy()
        gaps = {s: np.mean(expected - lgf.log_prob(x, num_samples=s, seed=(5, s)).numpy())
                for s in (1, 10, 1000)}
        elbo = np.mean(lgf.elbo(tf.repeat(x, 200, axis=0), seed=(9, 9)).numpy())
    finally:
        for w, v in zip(q.weights, saved, strict=True):
            w.assign(v)
    # KL(q || p(u | x)) in closed form: E_q[log w] = log p(x) - KL.
    mean_x, var_x, gain, offset, var_post = _linear_gaussian_moments()
    post_mean = offset + gain * x.numpy()
    kl = 0.5 * np.sum((1 + post_mean**2) / var_post - 1 + np.log(var_post), -1)
    # 200 x 200 ELBO samples whose per-sample std is ~1 nat: standard error ~0.005 nats.
    np.testing.assert_allclose(elbo, np.mean(expected - kl), atol=0.03)
    assert np.mean(kl) > 0.3  # the proposal is poor, so the bounds are far from tight
    # IS is biased low and the bias shrinks with S (IWAE bounds are monotone in S).
    assert gaps[1] > gaps[10] > gaps[1000] > -0.01
    # The bias at S = 1000 is ~ chi^2(p(u|x) || q) / (2S) = O(1e-3) for these Gaussians.
    assert gaps[1000] < 0.01


def test_log_det_is_a_product_of_scales_against_autodiff():
    g = flows.maf(3, 1, hidden_units=(8,), dtype=tf.float64).bijector
    layer = tffb.ContinuouslyIndexed(3, 2, g, hidden_units=(8,), activation="tanh",
                                     dtype=tf.float64)
    tff.testing.perturb_weights(layer, scale=0.5)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((6, 3)))
    u = tf.constant(rng.standard_normal((6, 2)))  # a different index for every row
    with tf.GradientTape() as tape:
        tape.watch(x)
        z = layer.inverse(tf.identity(x), conditional_input=u)
    jac = tape.batch_jacobian(z, x).numpy()
    ildj = layer.inverse_log_det_jacobian(x, event_ndims=1, conditional_input=u).numpy()
    np.testing.assert_allclose(ildj, np.linalg.slogdet(jac)[1], rtol=1e-10, atol=1e-10)
    _, log_s = layer.shift_and_log_scale(u)
    inner = g.inverse_log_det_jacobian(x, event_ndims=1).numpy()
    np.testing.assert_allclose(ildj - inner, np.sum(log_s, -1), atol=1e-10)
    # The paper's formula, log det Dg + log sum_i s_i, is not the Jacobian.
    assert not np.allclose(ildj - inner, np.log(np.sum(np.exp(log_s), -1)), atol=1e-3)
    fldj = layer.forward_log_det_jacobian(tf.identity(z), event_ndims=1, conditional_input=u)
    np.testing.assert_allclose(fldj, -ildj, atol=1e-10)
    np.testing.assert_allclose(layer.forward(tf.identity(z), conditional_input=u), x, atol=1e-10)


@pytest.mark.parametrize("builder", [flows.lgf_maf, flows.lgf_real_nvp])
def test_dirac_stack_is_its_base_flow(builder):
    lgf = builder(3, num_layers=2, hidden_units=(8,), st_hidden_units=(4,), dirac=True,
                  dtype="float64")
    tff.testing.perturb_weights(lgf, scale=0.3)
    zeros = tf.zeros([lgf.index_size], tf.float64)
    base_flow = tfd.TransformedDistribution(
        tfd.MultivariateNormalDiag(tf.zeros(3, tf.float64)),
        tfb.Chain([tffb.FixedConditional(layer, zeros) for layer in lgf.layers]))
    x = tf.constant(np.random.default_rng(1).standard_normal((7, 3)))
    expected = base_flow.log_prob(x).numpy()
    np.testing.assert_allclose(lgf.elbo(x, seed=(1, 2)), expected, rtol=1e-10)
    np.testing.assert_allclose(lgf.log_prob(x, num_samples=4, seed=(1, 2)), expected, rtol=1e-10)
    np.testing.assert_allclose(lgf.importance_weighted_bound(x, 3, seed=(1, 2)), expected,
                               rtol=1e-10)
    samples = lgf.sample(5, seed=(3, 4))
    assert samples.shape == (5, 3) and np.all(np.isfinite(base_flow.log_prob(samples)))


def test_new_stack_is_its_base_flow_for_every_u():
    # Zero-initialised s/t nets give G(.; u) = g and p = q = N(0, I): every weight is p_flow(x).
    lgf = flows.lgf_maf(3, num_layers=2, hidden_units=(8,), dtype="float64")
    for layer in lgf.layers:
        tff.testing.perturb_weights(layer.bijector, scale=0.3)
    base_flow = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(3, tf.float64)),
                                            tfb.Chain([layer.bijector for layer in lgf.layers]))
    x = tf.constant(np.random.default_rng(2).standard_normal((4, 2, 3)))  # rank-3 batch
    elbo = lgf.elbo(x, seed=(5, 6))
    assert elbo.shape == (4, 2)
    np.testing.assert_allclose(elbo, base_flow.log_prob(x), rtol=1e-10)


@pytest.mark.parametrize("kwargs", [dict(builder=flows.lgf_maf),
                                    dict(builder=flows.lgf_real_nvp, index_mode="coupling")])
def test_every_weight_gets_a_gradient(kwargs):
    kwargs = dict(kwargs)
    lgf = kwargs.pop("builder")(2, num_layers=2, hidden_units=(8,), st_hidden_units=(4,),
                                prior_hidden_units=(8,), posterior_hidden_units=(8,), **kwargs)
    tff.testing.perturb_weights(lgf, scale=0.3)
    weights = tff.testing.keras_weights(lgf)
    assert len(weights) == len(lgf.trainable_variables)
    x = tf.constant(np.random.default_rng(3).standard_normal((16, 2)), tf.float32)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(lgf.elbo(x, seed=(1, 2)))
    for w, g in zip(weights, tape.gradient(loss, weights), strict=True):
        assert g is not None, w.path
        assert np.all(np.isfinite(g)) and np.any(np.asarray(g) != 0), w.path


def _small_lgf_maf():
    return dict(objective="elbo", event_size=2, num_layers=2, hidden_units=(16,),
                st_hidden_units=(8,), prior_hidden_units=(16,), posterior_hidden_units=(16,))


@pytest.fixture(scope="module")
def rectangles():
    return datasets.two_rectangles(512, seed=0)


def test_fit_elbo_under_jit_then_save_and_load(rectangles, tmp_path):
    model = FlowModel.from_flow("lgf_maf", **_small_lgf_maf())
    model.compile(keras.optimizers.Adam(5e-3), jit_compile=True)
    first = model.evaluate(rectangles, batch_size=256, verbose=0)
    model.fit(rectangles, batch_size=128, epochs=4, verbose=0)
    last = model.evaluate(rectangles, batch_size=256, verbose=0)
    # The initial model is N(0, I); four epochs of Adam improve the negative ELBO by far
    # more than its evaluation noise (one u-sample per point, 512 points: ~0.05 nats).
    assert np.isfinite(last) and last < first - 0.2
    path = str(tmp_path / "lgf.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = rectangles[:64]
    np.testing.assert_array_equal(loaded.distribution.elbo(x, seed=(1, 2)),
                                  model.distribution.elbo(x, seed=(1, 2)))
    np.testing.assert_array_equal(loaded.log_prob(x, num_samples=10, seed=(3, 4)),
                                  model.log_prob(x, num_samples=10, seed=(3, 4)))


def test_fit_elbo_under_mirrored_strategy(rectangles, mirrored_strategy):
    # jit_compile=False: Keras 3 cannot XLA-compile a step over *logical* CPU replicas
    # (resources of replica 1 are read from CPU:0, for any model; see docs/scaling.md).
    strategy = mirrored_strategy
    with strategy.scope():
        model = FlowModel.from_flow("lgf_maf", **_small_lgf_maf())
        model.compile(keras.optimizers.Adam(5e-3))
    first = model.evaluate(rectangles, batch_size=256, verbose=0)
    model.fit(rectangles, batch_size=128, epochs=3, verbose=0)
    assert model.evaluate(rectangles, batch_size=256, verbose=0) < first - 0.2


def test_elbo_and_log_prob_compile_under_xla(linear_gaussian):
    # XLA's stateless normals differ from the TF kernel's for the same seed, so compare on
    # the exact-posterior stack, whose every estimate is log p(x) whatever u is drawn.
    lgf, exact, x = linear_gaussian
    fn = tf.function(lambda x: (lgf.elbo(x, seed=(1, 2)),
                                lgf.log_prob(x, num_samples=20, chunk_size=5, seed=(3, 4)),
                                lgf.importance_weighted_bound(x, 4, seed=(5, 6))),
                     jit_compile=True)
    for value in fn(x):
        np.testing.assert_allclose(value, exact.log_prob(x), atol=1e-10)
    # The paper's alternative layer (u inside the coupling conditioner) compiles too.
    coupling = flows.lgf_real_nvp(2, num_layers=2, hidden_units=(8,), index_mode="coupling")
    x32 = tf.cast(x[:8], tf.float32)
    elbo = tf.function(lambda x: coupling.elbo(x, seed=(1, 2)), jit_compile=True)(x32)
    assert elbo.shape == (8,) and np.all(np.isfinite(elbo))


def _lgf(**kwargs):
    layer = tffb.ContinuouslyIndexed(2, 1)
    return LGF(**{"layers": [layer], "index_size": 1, "event_size": 2, **kwargs})


@pytest.mark.parametrize("make,error,match", [
    (lambda: tffb.ContinuouslyIndexed(0, 1), ValueError, "`event_size` must be a positive"),
    (lambda: tffb.ContinuouslyIndexed(2, 1.5), TypeError, "`index_size` must be a positive"),
    (lambda: tffb.ContinuouslyIndexed(2, 1, "exp"), TypeError, "`bijector` must be a"),
    (lambda: tffb.ContinuouslyIndexed(2, 1, tffb.ContinuouslyIndexed(2, 1)), ValueError,
     "must not be conditional"),
    (lambda: tffb.ContinuouslyIndexed(2, 1, log_scale_bound=-1.0), ValueError,
     "`log_scale_bound` must be a positive"),
    (lambda: tffb.ContinuouslyIndexed(2, 1).inverse(tf.zeros([2])), ValueError,
     "needs `conditional_input`"),
    (lambda: tffb.ContinuouslyIndexed(2, 3).inverse(tf.zeros([2]), conditional_input=[1.0]),
     ValueError, r"index u: expected inputs of shape \[\.\.\., 3\]"),
    (lambda: tffb.FixedConditional(tfb.Exp(), [0.0]), ValueError, "must take `conditional_input`"),
    (lambda: tffb.FixedConditional(tffb.ContinuouslyIndexed(2, 1), 0.0), ValueError,
     r"`conditional_input` must have shape \[\.\.\., 1\]; got a scalar"),
    (lambda: _lgf(layers=tffb.ContinuouslyIndexed(2, 1)), TypeError, "`layers` must be a list"),
    (lambda: _lgf(layers=[]), ValueError, "at least one bijector"),
    (lambda: _lgf(layers=[tfb.Identity()]), ValueError, r"`layers\[0\]` must take"),
    (lambda: _lgf(layers=["shift"]), TypeError, r"`layers\[0\]` must be a `tfb.Bijector`"),
    (lambda: _lgf(event_size=None), ValueError, "Give `event_size` or a `base`"),
    (lambda: _lgf(base=tfd.MultivariateNormalDiag(tf.zeros(3))), ValueError,
     r"`base` must have event shape \[2\]"),
    (lambda: _lgf(index_size=0), ValueError, "`index_size` must be a positive"),
    (lambda: _lgf(num_importance_samples=0), ValueError, "`num_importance_samples` must be"),
    (lambda: _lgf().log_prob(tf.zeros([1, 2]), num_samples=0), ValueError,
     "`num_samples` must be a positive"),
    (lambda: _lgf().log_prob(tf.zeros([1, 2]), num_samples=10, chunk_size=3), ValueError,
     "must be a multiple of `chunk_size`"),
    (lambda: _lgf().elbo(tf.zeros([1, 3])), ValueError, r"expected inputs of shape \[\.\.\., 2\]"),
    (lambda: _lgf().elbo(tf.zeros([1, 2]), conditional_input=tf.zeros([1, 1])), ValueError,
     "`conditional_input` must be None"),
    (lambda: _lgf().importance_weighted_bound(tf.zeros([1, 2]), 0), ValueError,
     "`num_samples` must be a positive"),
    (lambda: flows.lgf_real_nvp(2, index_mode="concat"), ValueError, "`index_mode` must be one"),
    (lambda: flows.lgf_real_nvp(1), ValueError, "Coupling flows need `event_size` >= 2"),
    (lambda: flows.lgf_maf(2, num_layers=0), ValueError, "`num_layers` must be a positive"),
    (lambda: flows.lgf_maf(2, index_size=-1), ValueError, "`index_size` must be a positive"),
])
def test_bad_arguments_raise_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()
