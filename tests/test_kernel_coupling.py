"""KernelCoupling, the kernel machines and the ready-made Ferumal flow (English et al., 2024)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfp_flows import bijectors, flows, nets, testing
from tfp_flows.datasets import two_moons
from tfp_flows.internal import contract
from tfp_flows.keras import FlowModel
from tfp_flows.nets import kernels


def _x(n=64, d=4, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


# -- kernels ---------------------------------------------------------------


@pytest.mark.parametrize("kernel,fn", [
    ("se", lambda r: np.exp(-0.5 * r**2)),
    ("matern32", lambda r: (1 + math.sqrt(3) * r) * np.exp(-math.sqrt(3) * r)),
    ("matern52", lambda r: (1 + math.sqrt(5) * r + 5 * r**2 / 3) * np.exp(-math.sqrt(5) * r)),
])
def test_kernel_values_match_closed_form(kernel, fn):
    rng = np.random.default_rng(1)
    u, w = rng.standard_normal((7, 3)), rng.standard_normal((5, 3))
    ls = 0.7
    r = np.linalg.norm(u[:, None, :] - w[None], axis=-1) / ls
    got = kernels.kernel_matrix(kernels.canonical_kernel(kernel), tf.constant(u),
                                tf.constant(w), tf.constant(ls, tf.float64))
    np.testing.assert_allclose(got.numpy(), fn(r), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kernel", ["matern32", "matern52"])
def test_matern_gradient_is_finite_at_an_inducing_point(kernel):
    w = tf.constant([[0.3, -0.2]], tf.float64)
    u = tf.Variable([[0.3, -0.2]], dtype=tf.float64)  # r = 0 exactly
    with tf.GradientTape() as tape:
        k = kernels.kernel_matrix(kernel, u, w, tf.constant(1.0, tf.float64))
    g = tape.gradient(k, u).numpy()
    np.testing.assert_array_equal(g, 0.0)  # flat at r = 0, not NaN


def test_median_heuristic_is_the_median_distance():
    x = np.array([[0.0], [1.0], [3.0]])  # distances 1, 2, 3 (each twice)
    assert kernels.median_heuristic(x) == pytest.approx(2.0)
    assert kernels.median_heuristic(x, points=np.array([[0.0]])) == pytest.approx(1.0)
    assert kernels.median_heuristic(np.zeros((4, 2))) == 1.0


# -- the bijector ------------------------------------------------------------


def test_starts_at_identity():
    b = bijectors.KernelCoupling(4, 6)
    x = tf.constant(_x(8))
    np.testing.assert_allclose(b.forward(x).numpy(), x.numpy())
    np.testing.assert_allclose(b.inverse_log_det_jacobian(tf.identity(x), 1).numpy(), 0.0)


def test_log_scale_is_soft_clamped():
    b = bijectors.KernelCoupling(4, 3, log_scale_bound=2.0, length_scale=10.0)
    b.kernel_machine.a_s.assign(np.full((3, 2), 1e4, np.float32))
    fldj = b.forward_log_det_jacobian(tf.constant(_x(8)), 1).numpy()
    assert np.all(np.isfinite(fldj))
    assert np.all(fldj <= 2 * 2.0 + 1e-5) and np.all(fldj > 2 * 1.9)  # 2 dims, s ~ bound


def test_initialize_from_data_sets_points_and_median_length_scale():
    x = _x(50)
    b = bijectors.KernelCoupling(4, 6, seed=3)
    b.initialize_from_data(x)
    points = b.inducing_points.points.numpy()
    rows = {tuple(r) for r in x[:, :2]}
    assert all(tuple(p) in rows for p in points)  # a subset of u1 = y[..., :d]
    ls = math.exp(float(b.kernel_machine.log_length_scale.numpy()))
    assert ls == pytest.approx(kernels.median_heuristic(x[:, :2], points), rel=1e-5)
    b.initialize_from_data(x + 5.0)  # idempotent
    np.testing.assert_array_equal(b.inducing_points.points.numpy(), points)


def test_explicit_fixed_length_scale_is_kept_and_not_trained():
    b = bijectors.KernelCoupling(4, 6, length_scale=0.5, learn_length_scale=False)
    b.initialize_from_data(_x(20))
    assert math.exp(float(b.kernel_machine.log_length_scale.numpy())) == pytest.approx(0.5)
    assert all(w is not b.kernel_machine.log_length_scale for w in testing.keras_weights(b))
    assert len(testing.keras_weights(b)) == 3  # W, A_s, A_t


def test_conditional_input_changes_the_density_and_is_required():
    b = bijectors.KernelCoupling(4, 5, conditional_size=2, seed=1)
    testing.perturb_weights(b)
    assert contract.is_conditional(b)
    x = tf.constant(_x(6))
    c1, c2 = tf.zeros([6, 2]), tf.ones([6, 2])
    l1 = b.inverse_log_det_jacobian(x, 1, conditional_input=c1)
    l2 = b.inverse_log_det_jacobian(tf.identity(x), 1, conditional_input=c2)
    assert not np.allclose(l1.numpy(), l2.numpy())
    y = b.forward(x, conditional_input=c1)
    np.testing.assert_allclose(b.inverse(tf.identity(y), conditional_input=c1).numpy(),
                               x.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="`conditional_input` is required"):
        b.forward(tf.identity(x))
    with pytest.raises(ValueError, match="conditional_size=0; got a `conditional_input`"):
        bijectors.KernelCoupling(4, 5).forward(x, conditional_input=c1)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"num_inducing": 0}, ValueError, "`num_inducing` must be a positive integer; got 0"),
    ({"num_inducing": 2.5}, TypeError, "`num_inducing` must be a positive integer"),
    ({"event_size": 1}, ValueError, "`event_size` must be >= 2 for a coupling; got 1"),
    ({"kernel": "laplace"}, ValueError, "`kernel` must be one of"),
    ({"kernel": 3}, TypeError, "`kernel` must be a string"),
    ({"length_scale": -1.0}, ValueError, "`length_scale` must be a positive number; got -1.0"),
    ({"log_scale_bound": 0.0}, ValueError, "`log_scale_bound` must be a positive number"),
    ({"inducing_points": "w"}, TypeError, "`inducing_points` must be a tfp_flows.nets"),
    ({"inducing_points": nets.InducingPoints(4, 3)}, ValueError,
     r"must have shape \[num_inducing, d \+ conditional_size\] = \[5, 2\]; got \[4, 3\]"),
])
def test_bad_arguments_are_rejected(kwargs, error, match):
    args = {"event_size": 4, "num_inducing": 5, **kwargs}
    with pytest.raises(error, match=match):
        bijectors.KernelCoupling(**args)


def test_flow_builder_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`inducing` must be one of"):
        flows.ferumal(4, inducing="global")
    with pytest.raises(ValueError, match="`num_blocks` must be a positive integer; got 0"):
        flows.ferumal(4, num_blocks=0)
    with pytest.raises(ValueError, match="Coupling flows need `event_size` >= 2; got 1"):
        flows.ferumal(1)


# -- the flow ------------------------------------------------------------------


@pytest.mark.parametrize("inducing", ["per_layer", "shared", "representer"])
@pytest.mark.parametrize("learn,cond", [(True, 0), (False, 2)])
def test_parameter_count_matches_formula(inducing, learn, cond):
    kw = dict(event_size=5, num_blocks=3, num_inducing=7, inducing=inducing,
              learn_length_scale=learn, conditional_size=cond)
    model = FlowModel(flows.ferumal(**kw))
    count = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    assert count == flows.ferumal_num_params(**kw)
    # Hand-derived for D=5, d=2, L=6, N=7: 2N(D-d)L = 252, ActNorm 2DB = 30.
    points = {"per_layer": (2 + cond) * 7 * 6, "shared": (2 + cond) * 7, "representer": 0}
    assert count == 252 + 30 + (6 if learn else 0) + points[inducing]


def test_shared_points_are_one_weight_owned_once():
    flow = flows.ferumal(4, num_blocks=2, num_inducing=5, inducing="shared")
    couplings = [b for b in flow.bijector.bijectors if isinstance(b, bijectors.KernelCoupling)]
    assert len(couplings) == 4
    assert all(c.inducing_points is couplings[0].inducing_points for c in couplings)
    model = FlowModel(flow)
    ids = [id(w) for w in model.weights]
    assert len(ids) == len(set(ids))
    assert len(flow.trainable_variables) == len(model.trainable_weights)


def test_initialisation_walks_the_chain_and_shares_points_once():
    x = _x(200) * 3.0 + 1.0
    flow = flows.ferumal(4, num_blocks=2, num_inducing=8, inducing="shared", seed=2)
    bijectors.initialize_from_data(flow, x)
    couplings = [b for b in flow.bijector.bijectors if isinstance(b, bijectors.KernelCoupling)]
    # The first coupling sees ActNorm-standardised, permuted data: its points come from there.
    act, perm = flow.bijector.bijectors[:2]
    u1 = perm.inverse(act.inverse(tf.constant(x))).numpy()[:, :2]
    rows = {tuple(np.round(r, 4)) for r in u1}
    points = couplings[0].inducing_points.points.numpy()
    assert all(tuple(np.round(p, 4)) in rows for p in points)
    scales = [float(c.kernel_machine.log_length_scale.numpy()) for c in couplings]
    assert all(c.kernel_machine.is_initialized for c in couplings)
    assert len(set(np.round(scales, 6))) > 1  # each layer's own median heuristic


def test_representer_form_freezes_one_point_per_example():
    x = _x(30)
    flow = flows.ferumal(4, num_blocks=1, num_inducing=30, inducing="representer")
    bijectors.initialize_from_data(flow, x)
    coupling = flow.bijector.bijectors[2]
    points = coupling.inducing_points.points.numpy()
    act = flow.bijector.bijectors[0]
    u1 = flow.bijector.bijectors[1].inverse(act.inverse(tf.constant(x))).numpy()[:, :2]
    np.testing.assert_allclose(np.sort(points, 0), np.sort(u1, 0), atol=1e-6)
    frozen = coupling.inducing_points.points
    assert all(w is not frozen for w in testing.keras_weights(flow.bijector))


def test_gradients_reach_points_length_scale_weights_and_earlier_layers():
    flow = flows.ferumal(4, num_blocks=2, num_inducing=5, inducing="shared", seed=1)
    bijectors.initialize_from_data(flow, _x(100))
    testing.perturb_weights(flow, scale=0.1)
    model = FlowModel(flow)
    x = tf.constant(_x(32, seed=5))
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(model.log_prob(x))
    grads = tape.gradient(loss, model.trainable_weights)
    names = []
    for w, g in zip(model.trainable_weights, grads, strict=True):
        assert g is not None and np.any(np.asarray(g) != 0), w.path
        names.append(w.path)
    for part in ("points", "log_length_scale", "a_s", "a_t", "loc", "log_scale"):
        assert any(part in n for n in names), part


def test_log_prob_is_normalised_in_2d():
    # Riemann sum of exp(log p) over a wide grid: a true bijection integrates to 1.
    flow = flows.ferumal(2, num_blocks=1, num_inducing=6, kernel="matern52", seed=4,
                         dtype="float64")
    bijectors.initialize_from_data(flow, two_moons(300).astype(np.float64))
    testing.perturb_weights(flow, scale=0.5)
    g = np.linspace(-8, 8, 401)
    grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    mass = np.exp(flow.log_prob(grid).numpy()).sum() * (g[1] - g[0]) ** 2
    assert mass == pytest.approx(1.0, abs=0.01)


def test_fit_under_xla_reduces_the_loss():
    x = two_moons(1000, seed=0)
    model = FlowModel.from_flow("ferumal", event_size=2, num_blocks=1, num_inducing=10)
    model.initialize_from_data(x)
    model.compile(keras.optimizers.Adam(0.02), jit_compile=True)
    before = -float(np.mean(model.log_prob(x).numpy()))
    hist = model.fit(x, batch_size=200, epochs=4, verbose=0)
    after = -float(np.mean(model.log_prob(x).numpy()))
    assert np.all(np.isfinite(hist.history["loss"]))
    assert after < before - 0.3, (before, after)


def test_fit_under_mirrored_strategy(mirrored_strategy):
    strategy = mirrored_strategy
    x = two_moons(400, seed=1)
    with strategy.scope():
        model = FlowModel.from_flow("ferumal", event_size=2, num_blocks=1, num_inducing=6,
                                    inducing="shared", kernel="matern32")
        model.initialize_from_data(x)
        model.compile(keras.optimizers.Adam(0.02))
    before = [w.numpy().copy() for w in model.trainable_weights]
    hist = model.fit(x, batch_size=100, epochs=2, verbose=0)
    assert np.all(np.isfinite(hist.history["loss"]))
    weights = model.trainable_weights
    changed = [not np.allclose(b, w.numpy()) for b, w in zip(before, weights, strict=True)]
    assert all(changed)


def test_save_and_load_round_trip(tmp_path):
    x = _x(64, d=3)
    model = FlowModel.from_flow("ferumal", event_size=3, num_blocks=1, num_inducing=5,
                                inducing="shared", kernel="matern52")
    model.initialize_from_data(x)
    testing.perturb_weights(model.distribution, scale=0.2)
    path = str(tmp_path / "ferumal.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.log_prob(x).numpy(), model.log_prob(x).numpy(),
                               rtol=1e-5, atol=1e-5)
    # The restored flags stop a second initialisation from overwriting the weights.
    loaded.initialize_from_data(x + 3.0)
    np.testing.assert_allclose(loaded.log_prob(x).numpy(), model.log_prob(x).numpy(),
                               rtol=1e-5, atol=1e-5)
