"""Funnels: exact density, sampling, Jacobians, conv funnel, training, errors."""

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows import testing
from tfp_flows.bijectors.funnel_maps import ElementwiseAffine, ElementwiseSpline, FunnelLinear
from tfp_flows.distributions.funnel import Funnel
from tfp_flows.distributions.funnel_decoders import FlowDecoder, GaussianDecoder
from tfp_flows.flows import funnels
from tfp_flows.keras import FlowModel

tfd = tfp.distributions
F64 = tf.float64


def _normal(size, dtype=F64):
    return tfd.MultivariateNormalDiag(loc=tf.zeros([size], dtype))


def _funnel_2d(kind, seed=0):
    """A 2-D -> 1-D funnel with random non-trivial weights (float64)."""
    keras.utils.set_random_seed(seed)  # the hidden layers' Glorot initialisation
    if kind == "spline_gaussian":
        f = ElementwiseSpline(1, 1, num_bins=4, bound=3.0, hidden_units=(8,), dtype=F64)
        dec = GaussianDecoder(1, 1, hidden_units=(8,), dtype="float64")
    elif kind == "affine_flow":
        f = ElementwiseAffine(1, 1, hidden_units=(8,), dtype=F64)
        dec = FlowDecoder(1, 1, hidden_units=(8,), num_bins=4, bound=3.0, dtype="float64")
    else:  # F-MLP map R x_plus + w x_minus + b
        f = FunnelLinear(1, 1, seed=seed, dtype=F64)
        dec = GaussianDecoder(1, 1, hidden_units=(8,), dtype="float64")
    funnel = Funnel(2, 1, _normal(1), dec, f)
    return testing.perturb_weights(funnel, scale=0.3, seed=seed)


def _grid_log_prob(funnel, half_width, num):
    axis = np.linspace(-half_width, half_width, num)
    xx, yy = np.meshgrid(axis, axis, indexing="ij")
    pts = tf.constant(np.stack([xx.ravel(), yy.ravel()], -1), F64)
    lp = np.concatenate([funnel.log_prob(pts[i:i + 100_000]).numpy()
                         for i in range(0, pts.shape[0], 100_000)])
    return axis, lp.reshape(num, num)


@pytest.mark.parametrize("kind", ["spline_gaussian", "affine_flow", "linear"])
def test_density_normalises_2d_to_1d(kind):
    funnel = _funnel_2d(kind)
    axis, lp = _grid_log_prob(funnel, 10.0, 801)
    h = axis[1] - axis[0]
    mass = np.exp(lp).sum() * h * h
    # Riemann sum on a 0.025 grid over [-10, 10]^2. Measured with these weights: the error
    # is < 1e-3 at this grid and < 4e-5 on a 0.014 grid over [-14, 14]^2 (it is
    # discretisation, shrinking with the cell size), so 2e-3 separates a normalised
    # density from one whose log-det term is off by even 0.01.
    assert abs(mass - 1.0) < 2e-3, mass


def test_sample_log_prob_consistency():
    """Box probabilities from 40k samples agree with quadrature of exp(log_prob)."""
    funnel = _funnel_2d("spline_gaussian", seed=1)
    x = funnel.sample(40_000, seed=[4, 2]).numpy()
    axis, lp = _grid_log_prob(funnel, 10.0, 801)
    h = axis[1] - axis[0]
    dens = np.exp(lp)
    for lo, hi in [((-10, -10), (0, 0)), ((0, -10), (10, 0)), ((-1, -1), (1, 1)),
                   ((-10, 0.5), (10, 10))]:
        in_x = (axis >= lo[0]) & (axis < hi[0])
        in_y = (axis >= lo[1]) & (axis < hi[1])
        p_quad = dens[np.ix_(in_x, in_y)].sum() * h * h
        p_mc = np.mean((x[:, 0] >= lo[0]) & (x[:, 0] < hi[0]) & (x[:, 1] >= lo[1])
                       & (x[:, 1] < hi[1]))
        # MC standard error <= 0.5 / sqrt(40000) = 0.0025; allow ~5 standard errors
        # plus the grid's half-cell edge error.
        assert abs(p_quad - p_mc) < 0.015, (lo, hi, p_quad, p_mc)


def _jacobian(fn, t):
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(t)
        y = fn(tf.identity(t))
        cols = [y[..., i] for i in range(y.shape[-1])]
    return y, tf.stack([tape.gradient(c, t) for c in cols], axis=-2).numpy()


@pytest.mark.parametrize("builder", ["funnel_nsf", "funnel_glow", "funnel_mlp"])
def test_log_prob_matches_autodiff_jacobians(builder):
    """log p(x) = log p_Z(z) + log p_phi(x_minus|z) + log|det dz/dx_plus| + log|det dh/dx|,
    with both determinants from float64 autodiff Jacobians."""
    kwargs = {"funnel_mlp": {}}.get(builder, {"hidden_units": (8,), "num_bins": 4,
                                              "num_layers": 2})
    if builder == "funnel_glow":
        kwargs.pop("num_bins")
    funnel = getattr(funnels, builder)(5, dtype="float64", **kwargs)
    testing.perturb_weights(funnel, scale=0.2, seed=3)
    x = tf.constant(np.random.default_rng(0).standard_normal((4, 5)), F64)
    h, j_pre = _jacobian(funnel.pre_bijector.inverse, x)
    drop, keep = funnel.dropped_indices, np.setdiff1d(np.arange(5), funnel.dropped_indices)
    x_minus = tf.gather(h, drop, axis=-1)
    z, j_map = _jacobian(lambda t: funnel.conditional_map.inverse(t, conditional_input=x_minus),
                         tf.gather(h, keep, axis=-1))
    expected = (funnel.base.log_prob(z) + funnel.decoder.log_prob(x_minus, z)
                + np.linalg.slogdet(j_map)[1] + np.linalg.slogdet(j_pre)[1])
    np.testing.assert_allclose(funnel.log_prob(tf.identity(x)), expected, rtol=1e-8, atol=1e-8)
    # The map's own log-det term, against its autodiff Jacobian.
    ldj = funnel.conditional_map.inverse_log_det_jacobian(
        tf.gather(h, keep, axis=-1), event_ndims=1, conditional_input=x_minus)
    np.testing.assert_allclose(ldj, np.linalg.slogdet(j_map)[1], rtol=1e-8, atol=1e-8)


def test_slice_special_case_matches_hand_computation():
    """F = identity: log p = log N(x_plus; 0, I) + log N(x_minus; mu(x_plus), sigma(x_plus)^2)."""
    dec = testing.perturb_weights(GaussianDecoder(1, 2, hidden_units=(8,), dtype="float64"))
    funnel = Funnel(3, [1], _normal(2), dec)  # drop the middle coordinate
    x = np.random.default_rng(1).standard_normal((6, 3))
    x_plus, x_minus = x[:, [0, 2]], x[:, [1]]
    loc, raw = np.split(dec.net(tf.constant(x_plus)).numpy(), 2, axis=-1)
    scale = np.log1p(np.exp(raw + np.log(np.e - 1))) + 1e-3
    expected = (scipy.stats.norm.logpdf(x_plus).sum(-1)
                + scipy.stats.norm.logpdf(x_minus, loc, scale).sum(-1))
    np.testing.assert_allclose(funnel.log_prob(x), expected, rtol=1e-10)
    np.testing.assert_allclose(funnel.encode(x), x_plus)


def test_conv_funnel_log_det_brute_force():
    """z (4 tiles x 2 channels) against the kept entries of a 4x4x2 image: slogdet of the
    brute-force Jacobian equals num_tiles * log|det R|."""
    funnel = funnels.funnel_conv((4, 4, 2), num_funnels=1, actnorm=False, num_layers=0,
                                 dtype="float64")
    testing.perturb_weights(funnel, scale=0.3, seed=5)
    x = tf.constant(np.random.default_rng(2).standard_normal((3, 32)), F64)
    z, jac = _jacobian(funnel.encode, x)
    _, keep = funnels.conv_tile_indices((4, 4, 2), (2, 2))
    assert z.shape == (3, 8)
    autodiff = np.linalg.slogdet(jac[..., keep])[1]
    ldj = funnel.conditional_map.inverse_log_det_jacobian(
        tf.gather(x, keep, axis=-1), event_ndims=1,
        conditional_input=tf.gather(x, funnel.dropped_indices, axis=-1))
    np.testing.assert_allclose(ldj, autodiff, rtol=1e-10)
    # z depends on each tile's own entries only: a stride-equal-to-width convolution.
    assert np.count_nonzero(np.abs(jac[0]) > 0) <= 8 * 8


def test_conv_funnel_1d_log_det_is_n_over_2_log_a():
    """Kernel [a, b], stride 2 over n = 6 inputs: log|det| = 3 log|a|, not log(3 |a|)."""
    f = FunnelLinear(1, 1, num_tiles=3, dtype=F64)
    a = f._params.variable("lower_upper")[0, 0].numpy()
    ldj = f.inverse_log_det_jacobian(tf.zeros([2, 3], F64), event_ndims=1,
                                     conditional_input=tf.zeros([2, 3], F64)).numpy()
    np.testing.assert_allclose(ldj, 3 * np.log(abs(a)))
    assert not np.allclose(ldj, np.log(3 * abs(a)))


def test_conv_funnel_sample_round_trip_and_stack():
    funnel = funnels.funnel_conv((8, 8), num_funnels=2, num_layers=1, hidden_units=(8,),
                                 decoder_hidden_units=(8,))
    x = funnel.sample(4, seed=[1, 1])
    assert x.shape == (4, 64)
    assert funnel.encode(x).shape == (4, 16)
    assert funnel.encode(x, full=True).shape == (4, 4)
    assert np.all(np.isfinite(funnel.log_prob(x).numpy()))


def test_decode_inverts_encode():
    """x_plus = F(z; x_minus) exactly: decoding the encoded latent with the true x_minus
    recovers x (the right-inverse condition)."""
    funnel = testing.perturb_weights(funnels.funnel_mlp(6, latent_sizes=(4,), dtype="float64"))
    x = tf.constant(np.random.default_rng(3).standard_normal((5, 6)), F64)
    h = funnel.pre_bijector.inverse(x)
    x_minus = tf.gather(h, funnel.dropped_indices, axis=-1)
    z = funnel.encode(x)
    x_plus = funnel.conditional_map.forward(tf.identity(z), conditional_input=x_minus)
    rebuilt = funnel.pre_bijector.forward(funnel._merge(x_minus, x_plus))
    np.testing.assert_allclose(rebuilt, x, atol=1e-10)


@pytest.mark.parametrize("make", [
    lambda: ElementwiseSpline(3, 2, num_bins=4, bound=2.0, hidden_units=(8,), dtype=F64),
    lambda: ElementwiseSpline(3, 0, num_bins=4, bound=2.0, dtype=F64),
    lambda: ElementwiseAffine(3, 2, hidden_units=(8,), dtype=F64),
])
def test_elementwise_maps_round_trip_and_log_dets(make):
    """Eager float64 round trips (fresh tensors) and fldj = -ildj, inputs partly outside
    the spline interval (where it is the identity)."""
    f = testing.perturb_weights(make(), scale=0.5)
    rng = np.random.default_rng(8)
    x = tf.constant(rng.standard_normal((2, 5, 3)) * 2.0, F64)
    kw = ({"conditional_input": tf.constant(rng.standard_normal((2, 5, 2)), F64)}
          if f._conditional_size else {})
    z = f.inverse(x, **kw)
    np.testing.assert_allclose(f.forward(tf.constant(z.numpy()), **kw), x, atol=1e-10)
    fldj = f.forward_log_det_jacobian(tf.constant(z.numpy()), event_ndims=1, **kw)
    ildj = f.inverse_log_det_jacobian(tf.identity(x), event_ndims=1, **kw)
    assert fldj.shape == (2, 5)
    np.testing.assert_allclose(fldj, -ildj, atol=1e-10)
    _, jac = _jacobian(lambda t: f.inverse(t, **kw), x)
    np.testing.assert_allclose(ildj, np.linalg.slogdet(jac)[1], atol=1e-10)


def test_temperature_scales_latent():
    funnel = Funnel(2, 1, _normal(1), GaussianDecoder(1, 1, dtype="float64"))
    cold = funnel.sample(4000, seed=[0, 7], temperature=0.1).numpy()
    warm = funnel.sample(4000, seed=[0, 7]).numpy()
    # Slice funnel: x_plus = z, so its std is the temperature (SE of the std ~ 1%).
    assert abs(cold[:, 1].std() - 0.1) < 0.01 and abs(warm[:, 1].std() - 1.0) < 0.05


@pytest.mark.parametrize("builder,kwargs", [
    ("funnel_nsf", {"num_layers": 2, "num_bins": 4}),
    ("funnel_glow", {"num_layers": 3}),
    ("funnel_mlp", {"latent_sizes": (4, 2)}),
    ("funnel_conv", {"image_shape": (4, 4), "num_layers": 1}),
])
def test_gradients_reach_every_weight(builder, kwargs):
    size = {"image_shape": 16}.get(next(iter(kwargs)), 6)
    if builder != "funnel_conv":
        kwargs = {"event_size": size, **kwargs}
    if builder in ("funnel_nsf", "funnel_glow", "funnel_conv"):
        kwargs["hidden_units"] = (8,)
    funnel = testing.perturb_weights(getattr(funnels, builder)(**kwargs), scale=0.1)
    x = tf.constant(np.random.default_rng(4).standard_normal((16, size)), tf.float32)
    weights = testing.keras_weights(funnel)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(funnel.log_prob(x))
    grads = tape.gradient(loss, weights)
    for w, g in zip(weights, grads, strict=True):
        assert g is not None, f"no gradient reaches {w.path}"
        assert np.all(np.isfinite(g)) and np.any(g.numpy() != 0), w.path
    assert len(funnel.trainable_variables) == len(weights)


def test_initialize_from_data_reaches_actnorm_on_x_and_z():
    funnel = funnels.funnel_glow(4, latent_size=3, num_layers=3, funnel_layer=1,
                                 hidden_units=(8,))
    x = np.random.default_rng(5).normal(3.0, 2.0, (256, 4)).astype(np.float32)
    FlowModel(funnel).initialize_from_data(x)
    pre_act, base_act = funnel.pre_bijector.bijectors[0], funnel.base.bijector.bijectors[0]
    for act in (pre_act, base_act):
        assert float(act._params.weight("initialized").numpy()) == 1.0
    h = pre_act.inverse(tf.constant(x)).numpy()
    np.testing.assert_allclose(h.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(h.std(0), 1.0, atol=1e-3)


def _curved_data(n=512, size=4):
    data = np.random.default_rng(6).standard_normal((n, size)).astype(np.float32)
    data[:, 1] = data[:, 0] ** 2 + 0.1 * data[:, 1]
    return data


@pytest.mark.parametrize("flow,kwargs", [
    ("funnel_glow", {"num_layers": 2, "hidden_units": (16,), "decoder": "gaussian"}),
    ("funnel_mlp", {"latent_sizes": (3,)}),
    # XLA-compiling TFP's spline graph takes minutes on a loaded 2-core machine.
    pytest.param("funnel_nsf", {"num_layers": 2, "num_bins": 4, "hidden_units": (16,)},
                 marks=pytest.mark.slow),
])
def test_fit_under_jit_compile(flow, kwargs):
    data = _curved_data()
    model = FlowModel.from_flow(flow, event_size=4, **kwargs)
    model.compile(keras.optimizers.Adam(3e-3), jit_compile=True)
    model.initialize_from_data(data)
    before = -model.log_prob(data).numpy().mean()
    hist = model.fit(data, batch_size=64, epochs=3, verbose=0)
    after = -model.log_prob(data).numpy().mean()
    assert np.all(np.isfinite(hist.history["loss"])) and after < before - 0.1, (before, after)


def test_fit_under_mirrored_strategy(mirrored_strategy):
    # jit_compile=False: Keras 3 cannot XLA-compile a step over *logical* CPU replicas
    # (see tests/test_keras.py); the jit path is tested above. The strategy is the
    # session's shared one (tests/conftest.py): several per process break collectives.
    data = _curved_data()
    assert mirrored_strategy.num_replicas_in_sync == 2
    with mirrored_strategy.scope():
        model = FlowModel.from_flow("funnel_glow", event_size=4, num_layers=2,
                                    hidden_units=(16,), decoder="gaussian")
        model.compile(keras.optimizers.Adam(3e-3))
    model.initialize_from_data(data)
    first = model.evaluate(data, batch_size=128, verbose=0)
    np.testing.assert_allclose(first, -np.mean(model.log_prob(data)), rtol=1e-4)
    model.fit(data, batch_size=64, epochs=3, verbose=0)
    assert model.evaluate(data, batch_size=128, verbose=0) < first - 0.1


@pytest.mark.parametrize("flow,kwargs", [
    ("funnel_nsf", {"event_size": 4, "num_layers": 2, "num_bins": 4, "hidden_units": (8,)}),
    ("funnel_conv", {"image_shape": [4, 4], "num_layers": 1, "hidden_units": [8]}),
])
def test_save_load_round_trip(tmp_path, flow, kwargs):
    model = FlowModel.from_flow(flow, **kwargs)
    size = model.distribution.event_size
    data = np.random.default_rng(7).standard_normal((32, size)).astype(np.float32)
    model.initialize_from_data(data)
    testing.perturb_weights(model.distribution, scale=0.1)
    path = str(tmp_path / "funnel.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(restored.log_prob(data), model.log_prob(data), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("build,error,match", [
    (lambda: Funnel(2, 2, _normal(0), GaussianDecoder(1, 1)), ValueError,
     "`dropped` must drop between 1 and event_size - 1"),
    (lambda: Funnel(3, [0, 3], _normal(1), GaussianDecoder(2, 1)), ValueError,
     r"distinct indices in \[0, 3\)"),
    (lambda: Funnel(3, 1, _normal(1), GaussianDecoder(1, 2)), ValueError,
     r"`base` must have event shape \[2\]"),
    (lambda: Funnel(3, 1, _normal(2), GaussianDecoder(2, 1)), ValueError,
     "must model 1 dropped dimensions given a 2-dimensional latent"),
    (lambda: Funnel(3, 1, _normal(2), object()), TypeError, "`decoder` must have a `log_prob`"),
    (lambda: Funnel(3, 1, _normal(2), GaussianDecoder(1, 2), conditional_map="id"), TypeError,
     "`conditional_map` must be a tfb.Bijector"),
    (lambda: funnels.funnel_conv((6, 6), num_funnels=2), ValueError,
     "needs image sizes divisible by the kernel"),
    (lambda: funnels.funnel_conv((7, 8)), ValueError, "got image 7x8"),
    (lambda: funnels.funnel_nsf(4, latent_size=4), ValueError,
     r"`latent_size` must be smaller than `event_size` \(4\)"),
    (lambda: funnels.funnel_nsf(1), ValueError, "needs `event_size` >= 2"),
    (lambda: funnels.funnel_mlp(6, latent_sizes=(4, 5)), ValueError,
     "`latent_sizes` must decrease strictly"),
    (lambda: funnels.funnel_nsf(4, num_layers=2, funnel_layer=2), ValueError,
     r"`funnel_layer` must be in \[0, num_layers\)"),
    (lambda: funnels.funnel_nsf(4, decoder="vae"), ValueError, "`decoder` must be one of"),
])
def test_bad_configurations(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_bad_inputs():
    funnel = _funnel_2d("spline_gaussian")
    with pytest.raises(ValueError, match=r"expected inputs of shape \[\.\.\., 2\]; got shape"):
        funnel.log_prob(tf.zeros([3, 3], F64))
    with pytest.raises(ValueError, match="is conditional: pass `conditional_input`"):
        funnel.conditional_map.inverse(tf.zeros([3, 1], F64))
    with pytest.raises(ValueError, match="FunnelLinear is conditional"):
        FunnelLinear(1, 1).inverse(tf.zeros([2, 1]))
