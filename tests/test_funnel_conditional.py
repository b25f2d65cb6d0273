"""Conditional funnels p(x | c): exact density, routing of c to every part, sampling, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows import distributions as tfpd
from tfp_flows import testing
from tfp_flows.bijectors.funnel_maps import (
    ElementwiseAffine,
    ElementwiseSpline,
    FunnelLinear,
    spline_parameters,
)
from tfp_flows.distributions.base import FlowDistribution
from tfp_flows.distributions.funnel import Funnel, sample_at_temperature
from tfp_flows.distributions.funnel_decoders import (
    FlowDecoder,
    GaussianDecoder,
    TileGaussianDecoder,
)
from tfp_flows.flows import baselines, funnels
from tfp_flows.internal import contract
from tfp_flows.keras import FlowModel

tfd = tfp.distributions
F64 = tf.float64
C = 2

# Tiny configurations of every registered funnel flow (and the F-MLP baseline).
BUILDERS = {
    "funnel_nsf": {"event_size": 4, "num_layers": 2, "num_bins": 4, "hidden_units": (8,)},
    "funnel_glow": {"event_size": 4, "num_layers": 3, "hidden_units": (8,)},
    "funnel_slice": {"event_size": 4, "num_layers": 2, "num_bins": 4, "hidden_units": (8,)},
    "funnel_mlp": {"event_size": 5, "latent_sizes": (3, 2), "num_bins": 4, "hidden_units": (8,)},
    "funnel_conv": {"image_shape": (4, 4), "num_layers": 1, "num_bins": 4, "hidden_units": (8,),
                    "decoder_hidden_units": (8,)},
    "mlp_flow": {"event_size": 4, "num_bins": 4, "hidden_units": (8,)},
}


def _build(name, conditional_size=C, dtype="float32", **extra):
    return getattr(funnels, name)(conditional_size=conditional_size, dtype=dtype,
                                  **{**BUILDERS[name], **extra})


def _data(dist, n, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, dist.event_shape[0])).astype(dtype),
            rng.standard_normal((n, C)).astype(dtype))


def _funnel_2d(seed=0):
    """A conditional 2-D -> 1-D funnel: every part sees c (float64, perturbed weights)."""
    keras.utils.set_random_seed(seed)  # the hidden layers' Glorot initialisation
    pre = ElementwiseAffine(2, C, hidden_units=(8,), dtype=F64, name="pre_affine")
    f = ElementwiseSpline(1, 1 + C, num_bins=4, bound=3.0, hidden_units=(8,), dtype=F64)
    dec = GaussianDecoder(1, 1, hidden_units=(8,), dtype="float64", conditional_size=C)
    base = baselines.transformed(
        [ElementwiseSpline(1, C, num_bins=4, bound=3.0, hidden_units=(8,), dtype=F64)], 1, F64)
    funnel = Funnel(2, 1, base, dec, f, pre, conditional_size=C)
    # 0.15: larger perturbations can give the pre-flow a scale of e^1.4, and mass outside
    # any small grid.
    return testing.perturb_weights(funnel, scale=0.15, seed=seed)


def test_conditional_density_normalises_for_two_conditions():
    funnel = _funnel_2d()
    axis = np.linspace(-10.0, 10.0, 501)
    h = axis[1] - axis[0]
    xx, yy = np.meshgrid(axis, axis, indexing="ij")
    pts = tf.constant(np.stack([xx.ravel(), yy.ravel()], -1), F64)
    densities = []
    for c in ([0.8, -1.1], [-1.5, 0.4]):
        lp = funnel.log_prob(pts, conditional_input=tf.constant(c, F64)).numpy()
        densities.append(np.exp(lp))
        # Riemann sum on a 0.04 grid over [-10, 10]^2. Measured for seeds 0-2: |error| <
        # 6e-5 here and < 6e-6 on a 0.02 grid over [-12, 12]^2, so 2e-3 separates a
        # normalised density from one whose log-det term is off by even 0.01.
        assert abs(densities[-1].sum() * h * h - 1.0) < 2e-3, c
    # The two conditional densities are different densities.
    assert np.abs(densities[0] - densities[1]).sum() * h * h > 0.1


def test_log_prob_decomposes_exactly_given_c():
    """log p(x|c) = log p_Z(z|c) + log p(x_minus|z,c) + log|dz/dx_plus| + log|dh/dx| (autodiff)."""
    funnel = testing.perturb_weights(_build("funnel_nsf", dtype="float64", event_size=5),
                                     scale=0.2, seed=3)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((4, 5)), F64)
    c = tf.constant(rng.standard_normal((4, C)), F64)
    pre_kw = contract.route(funnel.pre_bijector, c)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        h = funnel.pre_bijector.inverse(x, **pre_kw)
        cols = [h[:, i] for i in range(5)]
    j_pre = tf.stack([tape.gradient(col, x) for col in cols], axis=-2).numpy()
    drop = funnel.dropped_indices
    keep = np.setdiff1d(np.arange(5), drop)
    x_minus, x_plus = tf.gather(h, drop, axis=-1), tf.gather(h, keep, axis=-1)
    map_c = tf.concat([x_minus, c], -1)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x_plus)
        z = funnel.conditional_map.inverse(x_plus, conditional_input=map_c)
        cols = [z[:, i] for i in range(z.shape[-1])]
    j_map = tf.stack([tape.gradient(col, x_plus) for col in cols], axis=-2).numpy()
    base_c = c if contract.is_conditional(funnel.base) else None  # the base may ignore c
    expected = (contract.log_prob(funnel.base, z, base_c)
                + funnel.decoder.log_prob(x_minus, z, conditional_input=c)
                + np.linalg.slogdet(j_map)[1] + np.linalg.slogdet(j_pre)[1])
    np.testing.assert_allclose(funnel.log_prob(tf.identity(x), conditional_input=c), expected,
                               rtol=1e-8, atol=1e-8)
    assert funnel.log_prob_kind == "exact"
    assert funnel.conditional_size == C


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_log_prob_shape_broadcast_and_dependence_on_c(name):
    dist = testing.perturb_weights(_build(name), scale=0.2, seed=1)
    x, c = _data(dist, 6)
    lp = tfpd.log_prob(dist, x, conditional_input=c).numpy()
    assert lp.shape == (6,) and np.all(np.isfinite(lp))
    # One condition [C] for the whole batch equals that condition tiled.
    one = tfpd.log_prob(dist, x, conditional_input=c[0]).numpy()
    tiled = tfpd.log_prob(dist, x, conditional_input=np.tile(c[:1], (6, 1))).numpy()
    np.testing.assert_allclose(one, tiled, rtol=1e-5, atol=1e-5)
    # With trained-looking (perturbed) weights the condition changes the density.
    other = tfpd.log_prob(dist, x, conditional_input=c + 1.0).numpy()
    assert np.all(np.abs(other - lp) > 1e-6), (lp, other)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_sample_with_condition_shapes(name):
    dist = testing.perturb_weights(_build(name), scale=0.1, seed=2)
    d = dist.event_shape[0]
    c = tf.constant(_data(dist, 5)[1])
    # The contract walker: [C] (shared) and [*sample_shape, C] (one per sample).
    shared = tfpd.sample(dist, 5, conditional_input=c[0], seed=(1, 2))
    per_sample = tfpd.sample(dist, 5, conditional_input=tf.tile(c[:1], [5, 1]), seed=(1, 2))
    assert shared.shape == (5, d)
    np.testing.assert_allclose(shared, per_sample, rtol=1e-5, atol=1e-5)
    grid = tfpd.sample(dist, (2, 3), conditional_input=tf.zeros([2, 3, C]), seed=(3, 4))
    assert grid.shape == (2, 3, d)
    varied = tfpd.sample(dist, 5, conditional_input=c, seed=(1, 2)).numpy()
    assert varied.shape == (5, d) and np.all(np.isfinite(varied))
    assert not np.allclose(varied, tfpd.sample(dist, 5, conditional_input=c + 1.0,
                                               seed=(1, 2)))
    if isinstance(dist, Funnel):  # the distribution's own sample takes [C] and [n, C]
        np.testing.assert_allclose(dist.sample(5, seed=(1, 2), conditional_input=c[0].numpy()),
                                   dist.sample(5, seed=(1, 2), conditional_input=tf.tile(
                                       c[:1], [5, 1])), rtol=1e-5, atol=1e-5)
        own = dist.sample(5, seed=(1, 2), conditional_input=c).numpy()
        assert own.shape == (5, d) and np.all(np.isfinite(own))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_gradient_reaches_every_weight_with_condition(name):
    dist = testing.perturb_weights(_build(name), scale=0.1, seed=4)
    x, c = _data(dist, 16, seed=4)
    weights = testing.keras_weights(dist)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(tfpd.log_prob(dist, x, conditional_input=c))
    grads = tape.gradient(loss, weights)
    for w, g in zip(weights, grads, strict=True):
        assert g is not None, f"no gradient reaches {w.path}"
        assert np.all(np.isfinite(g)) and np.any(g.numpy() != 0), w.path


# Tracing a training step through TFP's spline graph takes 10-40 s on a loaded 2-core
# machine, so three builders train in the default suite (one under XLA).
_SLOW = pytest.mark.slow


@pytest.mark.parametrize("name,jit", [
    # Gaussian decoder: no spline graph, so XLA compiles fastest.
    ("funnel_glow_gaussian", True),
    ("funnel_conv", False),
    ("funnel_slice", False),
    pytest.param("mlp_flow", False, marks=_SLOW),
    pytest.param("funnel_nsf", True, marks=_SLOW),
    pytest.param("funnel_glow", False, marks=_SLOW),
    pytest.param("funnel_mlp", True, marks=_SLOW),
])
def test_builder_trains_one_step_under_flow_model(name, jit):
    # One Glow step on x, none on z: the smallest conditional funnel to compile.
    extra = ({"decoder": "gaussian", "num_layers": 2} if name == "funnel_glow_gaussian"
             else {})
    # Perturbed: with zero output layers only those would get a gradient in step one.
    dist = testing.perturb_weights(_build(name.removesuffix("_gaussian"), **extra), scale=0.1)
    model = FlowModel(dist)
    model.compile(keras.optimizers.Adam(1e-2), jit_compile=jit)
    x, c = _data(dist, 32, seed=5)
    before = [w.numpy().copy() for w in model.trainable_weights]
    hist = model.fit({"x": x, "conditional_input": c}, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])
    moved = [not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights,
                                                               strict=True)]
    assert all(moved), f"{moved.count(False)} of {len(moved)} weights did not move"


def test_conditional_save_load_round_trip(tmp_path):
    model = FlowModel.from_flow("funnel_conv", conditional_size=C, **BUILDERS["funnel_conv"])
    x, c = _data(model.distribution, 16, seed=7)
    testing.perturb_weights(model.distribution, scale=0.1)
    path = str(tmp_path / "conditional_funnel.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.distribution.conditional_size == C
    np.testing.assert_allclose(restored.log_prob(x, conditional_input=c),
                               model.log_prob(x, conditional_input=c), rtol=1e-5, atol=1e-5)


def test_initialize_from_data_with_condition_reaches_actnorm_on_x_and_z():
    funnel = funnels.funnel_glow(4, latent_size=3, num_layers=3, funnel_layer=1,
                                 hidden_units=(8,), conditional_size=C)
    rng = np.random.default_rng(5)
    x = rng.normal(3.0, 2.0, (256, 4)).astype(np.float32)
    c = rng.standard_normal((256, C)).astype(np.float32)
    FlowModel(funnel).initialize_from_data(x, conditional_input=c)
    pre_act, base_act = funnel.pre_bijector.bijectors[0], funnel.base.bijector.bijectors[0]
    for act in (pre_act, base_act):
        assert float(act._params.weight("initialized").numpy()) == 1.0
    h = pre_act.inverse(tf.constant(x)).numpy()
    np.testing.assert_allclose(h.mean(0), 0.0, atol=1e-4)


def test_encode_decode_with_condition():
    funnel = testing.perturb_weights(_build("funnel_mlp", dtype="float64"), scale=0.2)
    rng = np.random.default_rng(3)
    x = tf.constant(rng.standard_normal((5, 5)), F64)
    c = tf.constant(rng.standard_normal((5, C)), F64)
    z = funnel.encode(x, conditional_input=c)
    assert z.shape == (5, 3)
    assert funnel.encode(x, conditional_input=c, full=True).shape == (5, 2)
    assert not np.allclose(z, funnel.encode(x, conditional_input=c + 1.0))
    # Right inverse: F(z; [x_minus, c]) with the true x_minus gives back x.
    h = funnel.pre_bijector.inverse(x)
    x_minus = tf.gather(h, funnel.dropped_indices, axis=-1)
    x_plus = funnel.conditional_map.forward(tf.identity(z),
                                            conditional_input=tf.concat([x_minus, c], -1))
    np.testing.assert_allclose(funnel.pre_bijector.forward(funnel._merge(x_minus, x_plus)), x,
                               atol=1e-10)
    assert funnel.decode(z, seed=(0, 1), conditional_input=c).shape == (5, 5)


def test_sample_at_temperature_with_condition():
    dec = testing.perturb_weights(GaussianDecoder(1, 1, hidden_units=(8,), dtype="float64",
                                                  conditional_size=C))
    funnel = Funnel(2, 1, tfd.MultivariateNormalDiag(tf.zeros([1], F64)), dec,
                    conditional_size=C)
    c = tf.constant([0.5, -0.5], F64)
    cold = funnel.sample(4000, seed=[0, 7], temperature=0.1, conditional_input=c).numpy()
    # Slice funnel, unconditional N(0, 1) base: x_plus = z has std T (SE of the std ~ 1%).
    assert abs(cold[:, 1].std() - 0.1) < 0.01
    flow = _build("funnel_nsf")
    s = sample_at_temperature(flow, 7, 0.5, seed=(1, 1), conditional_input=np.ones(C))
    with pytest.raises(ValueError, match="sample_at_temperature: `conditional_input` is required"):
        sample_at_temperature(flow, 7, 0.5, seed=(1, 1))
    assert s.shape == (7, 4) and np.all(np.isfinite(s.numpy()))


def test_decoders_take_condition():
    rng = np.random.default_rng(9)
    z, c = rng.standard_normal((6, 4)), rng.standard_normal((6, C))
    cases = [
        (GaussianDecoder(2, 4, hidden_units=(8,), dtype="float64", conditional_size=C), 2, z),
        (FlowDecoder(2, 4, hidden_units=(8,), num_bins=4, dtype="float64",
                     conditional_size=C), 2, z),
        (TileGaussianDecoder((2, 2, 1), 3, hidden_units=(8,), dtype="float64",
                             conditional_size=C), 12, z),
    ]
    for dec, m, zz in cases:
        testing.perturb_weights(dec, scale=0.3)
        zz = tf.constant(zz, F64)
        x_minus = dec.sample(zz, seed=(0, 3), conditional_input=c)
        assert x_minus.shape == (6, m) and dec.conditional_size == C
        lp = dec.log_prob(x_minus, zz, conditional_input=c).numpy()
        lp2 = dec.log_prob(x_minus, zz, conditional_input=c + 1.0).numpy()
        assert np.all(np.isfinite(lp)) and not np.allclose(lp, lp2), type(dec).__name__
        with pytest.raises(ValueError, match="`conditional_input` is required"):
            dec.log_prob(x_minus, zz)


def test_tile_decoder_is_a_gaussian_per_tile():
    """TileGaussianDecoder's density is the head's Gaussian at each tile, summed over tiles."""
    dec = testing.perturb_weights(TileGaussianDecoder((2, 2, 1), 3, neighbourhood=0,
                                                      hidden_units=(8,), dtype="float64",
                                                      conditional_size=C), scale=0.3)
    rng = np.random.default_rng(1)
    z, c, x_minus = (rng.standard_normal((4, 4)), rng.standard_normal((4, C)),
                     rng.standard_normal((4, 12)))
    loc, log_scale = dec.head.loc_and_log_scale(
        tf.constant(z[:, :, None]), tf.constant(np.repeat(c[:, None], 4, axis=1)))
    x_t = x_minus.reshape(4, 4, 3)
    scale = np.exp(log_scale.numpy())
    expected = (-0.5 * ((x_t - loc.numpy()) / scale) ** 2 - np.log(scale)
                - 0.5 * np.log(2 * np.pi)).sum((1, 2))
    np.testing.assert_allclose(dec.log_prob(tf.constant(x_minus), tf.constant(z),
                                            conditional_input=c), expected, rtol=1e-10)


def test_funnel_linear_condition_offset_keeps_log_det():
    f = testing.perturb_weights(FunnelLinear(1, 3, num_tiles=2, seed=1, dtype=F64,
                                             extra_conditional_size=C), scale=0.3)
    plain = FunnelLinear(1, 3, num_tiles=2, seed=1, dtype=F64)
    assert f.conditional_size == 2 * 3 + C
    rng = np.random.default_rng(2)
    x = tf.constant(rng.standard_normal((4, 2)), F64)
    cond = tf.constant(rng.standard_normal((4, 6 + C)), F64)
    z = f.inverse(x, conditional_input=cond)
    np.testing.assert_allclose(f.forward(tf.constant(z.numpy()), conditional_input=cond), x,
                               atol=1e-10)
    shifted = tf.concat([cond[:, :6], cond[:, 6:] + 1.0], -1)
    assert not np.allclose(f.inverse(x, conditional_input=shifted), z)
    ldj = f.inverse_log_det_jacobian(x, event_ndims=1, conditional_input=cond)
    np.testing.assert_allclose(ldj, f.inverse_log_det_jacobian(x, event_ndims=1,
                                                               conditional_input=shifted))
    assert plain.conditional_size == 6


def test_spline_parameters_identity_at_zero():
    widths, heights, slopes = spline_parameters(tf.zeros([3, 2, 3 * 4 - 1], F64), 4, 2.0)
    assert widths.shape == (3, 2, 4) and slopes.shape == (3, 2, 3)
    np.testing.assert_allclose(widths, 1.0)  # four equal bins over [-2, 2]
    np.testing.assert_allclose(tf.reduce_sum(heights, -1), 4.0)
    np.testing.assert_allclose(slopes, 1.0)  # exactly the identity
    spline = tfp.bijectors.RationalQuadraticSpline(widths, heights, slopes, range_min=-2.0)
    x = tf.constant(np.linspace(-1.9, 1.9, 6).reshape(3, 2), F64)
    np.testing.assert_allclose(spline.forward(x), x, atol=1e-3)


def _plain_funnel(**kw):
    return Funnel(2, 1, tfd.MultivariateNormalDiag(tf.zeros([1])),
                  GaussianDecoder(1, 1, hidden_units=(4,), **kw.pop("dec", {})), **kw)


@pytest.mark.parametrize("build,match", [
    (lambda: _plain_funnel(dec={"conditional_size": 3}, conditional_size=C),
     r"`decoder` must take a conditional input of size 2 .* got conditional_size=3"),
    (lambda: _plain_funnel(dec={"conditional_size": C}),
     r"`decoder` must take a conditional input of size 0 .* got conditional_size=2"),
    (lambda: _plain_funnel(conditional_map=ElementwiseSpline(1, 1), conditional_size=C),
     r"`conditional_map` must take a conditional input of size 3 \(concat\(\[x_minus, c\]\)"),
    (lambda: _plain_funnel(pre_bijector=ElementwiseAffine(2, 3), conditional_size=C),
     r"`pre_bijector` must take a conditional input of size 2"),
    (lambda: Funnel(2, 1, baselines.transformed([ElementwiseAffine(1, 3)], 1, tf.float32),
                    GaussianDecoder(1, 1), conditional_size=C),
     r"`base` must take a conditional input of size 2"),
    (lambda: _plain_funnel(conditional_size=-1), r"`conditional_size` must be"),
])
def test_part_size_mismatch(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_condition_errors():
    funnel = _build("funnel_glow", decoder="gaussian")
    plain = _build("funnel_glow", conditional_size=0, decoder="gaussian")
    x, c = _data(funnel, 3)
    with pytest.raises(ValueError,
                       match=r"`conditional_input` is required: expected .* \[\.\.\., 2\]"):
        funnel.log_prob(x)
    with pytest.raises(ValueError, match="`conditional_input` is required"):
        funnel.sample(3, seed=(0, 1))
    with pytest.raises(ValueError, match="`conditional_input` is required"):
        funnel.encode(x)
    with pytest.raises(ValueError, match="must be None for an unconditional flow"):
        plain.log_prob(x, conditional_input=c)
    with pytest.raises(ValueError, match="must be None for an unconditional flow"):
        plain.sample(3, seed=(0, 1), conditional_input=c)
    with pytest.raises(ValueError, match=r"must have shape \[\.\.\., 2\]; got shape \(3, 3\)"):
        funnel.log_prob(x, conditional_input=np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match=r"must have shape \[C\] .* got shape \(4, 2\)"):
        funnel.sample(3, seed=(0, 1), conditional_input=np.zeros((4, C), np.float32))


class _NoTemperature(FlowDistribution):
    @property
    def log_prob_kind(self):
        return "exact"


def test_sample_at_temperature_rejects_other_library_distributions():
    with pytest.raises(TypeError, match="_NoTemperature has no temperature"):
        sample_at_temperature(_NoTemperature(2), 3, 0.5, seed=(0, 1))
