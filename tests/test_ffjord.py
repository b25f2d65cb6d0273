"""FFJORD: analytic linear ODE, exact trace vs autodiff, Hutchinson, adjoint, RNODE, Keras."""

import keras
import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows import bijectors, flows, nets, testing
from tfp_flows.keras import RNODE, FlowModel, ReverseKL
from tfp_flows.ode import adjoint
from tfp_flows.ode import solvers as ode

tfd = tfp.distributions

A = np.array([[-0.3, 0.8, 0.1], [-0.5, 0.2, 0.4], [0.1, -0.2, -0.6]])


class Linear(keras.layers.Layer):
    """dz/dt = A z (+ A_c c): the flow map is expm(A (t1 - t0)), the log-det (t1 - t0) tr(A)."""

    def __init__(self, matrix, conditional_size=0, **kwargs):
        super().__init__(**kwargs)
        self.event_size = matrix.shape[0]
        self.conditional_size = conditional_size
        self.matrix = self.add_weight(shape=matrix.shape, initializer="zeros", name="matrix")
        self.matrix.assign(matrix.astype(self.dtype))
        self.cond = self.add_weight(shape=(max(conditional_size, 1), self.event_size),
                                    initializer="ones", name="cond")
        self.built = True

    def call(self, t, z, conditional_input=None):
        out = tf.einsum("...j,ij->...i", z, self.matrix)
        if conditional_input is not None:
            out = out + tf.einsum("...j,ji->...i", conditional_input, self.cond)
        return out


def _ode_net(dtype="float64", conditional_size=0, seed=0):
    net = nets.ODENet(2, (16,), conditional_size=conditional_size, dtype=dtype)
    return testing.perturb_weights(net, scale=0.5, seed=seed)


def _x(shape, dtype=tf.float64, seed=0):
    return tf.constant(np.random.default_rng(seed).standard_normal(shape), dtype)


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-7), ("float32", 1e-4)])
@pytest.mark.parametrize("solver", ["dopri5", "rk4"])
def test_linear_ode_matches_expm_and_trace(dtype, tol, solver):
    b = bijectors.FFJORD(Linear(A, dtype=dtype), t0=0.5, t1=2.0, solver=solver, num_steps=64,
                         rtol=1e-9 if dtype == "float64" else 1e-6, atol=1e-9)
    x = _x((4, 3), dtype)
    y = b.forward(x)
    np.testing.assert_allclose(y, x.numpy() @ scipy.linalg.expm(1.5 * A).T, rtol=tol, atol=tol)
    expected = np.full(4, 1.5 * np.trace(A))
    np.testing.assert_allclose(b.forward_log_det_jacobian(x, 1), expected, rtol=tol, atol=tol)
    np.testing.assert_allclose(b.inverse_log_det_jacobian(tf.identity(y), 1), -expected,
                               rtol=tol, atol=tol)
    assert y.dtype == tf.as_dtype(dtype)


def test_fixed_step_solvers_nfe_and_order():
    """NFE = steps x stages; halving the step cuts the error by ~2^order."""
    x = _x((2, 3))
    exact = x.numpy() @ scipy.linalg.expm(A).T
    for solver, order in [("euler", 1), ("midpoint", 2), ("rk4", 4)]:
        errs = []
        for steps in (8, 16):
            sol = bijectors.FFJORD(Linear(A, dtype="float64"), solver=solver,
                                   num_steps=steps).solve(x, "forward")
            assert int(sol.nfe) == steps * ode.FIXED_STEP_STAGES[solver]
            errs.append(np.abs(sol.state.numpy() - exact).max())
        # A p-th order method's error ratio is 2^p; allow +-1 in the exponent.
        assert 2 ** (order - 1) < errs[0] / errs[1] < 2 ** (order + 1), (solver, errs)


def test_dopri5_reports_nfe_and_running_out_of_steps():
    b = bijectors.FFJORD(_ode_net(), rtol=1e-8, atol=1e-8)
    sol = b.solve(_x((3, 2)), "forward")
    # 2 evaluations to choose the first step, then 6 per attempted step (FSAL).
    assert int(sol.nfe) == 2 + 6 * int(sol.num_steps) and bool(sol.success)
    short = bijectors.FFJORD(_ode_net(), rtol=1e-8, atol=1e-8, max_num_steps=2)
    assert not bool(short.solve(_x((3, 2)), "forward").success)
    strict = bijectors.FFJORD(_ode_net(), rtol=1e-8, atol=1e-8, max_num_steps=2,
                              validate_args=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_num_steps"):
        strict.forward(_x((3, 2)))


def test_dopri5_first_step_and_seminorm():
    """`first_step` replaces Hairer's rule (one evaluation fewer; too large a step is
    rejected, not trusted); `error_size` leaves passive integrals out of error control."""
    options = ode.SolverOptions.make("dopri5", rtol=1e-6, atol=1e-6)
    t0, t1 = tf.constant(0.0, tf.float64), tf.constant(1.0, tf.float64)

    def fn(t, y):  # y' = -y; the passive q' = cos(40 t) y never feeds back into y
        return -y[0], tf.cos(40.0 * t) * y[0]

    y0 = (tf.ones([3], tf.float64), tf.zeros([3], tf.float64))
    q_exact = (40 * np.sin(40.0) - np.cos(40.0)) / (np.e * 1601) + 1 / 1601
    full, full_stats, _ = ode.solve(fn, y0, t0, t1, options)
    semi, semi_stats, _ = ode.solve(fn, y0, t0, t1, options, error_size=1)
    assert int(semi_stats.num_steps) < int(full_stats.num_steps)
    for y, tol in ((full, 1e-6), (semi, 1e-6)):
        np.testing.assert_allclose(y[0], np.exp(-1.0), rtol=tol)
    np.testing.assert_allclose(full[1], q_exact, rtol=1e-5)
    for first_step in (0.3, 100.0):
        y, stats, h = ode.solve(fn, y0, t0, t1, options, first_step=first_step)
        assert int(stats.nfe) == 1 + 6 * int(stats.num_steps) and bool(stats.success)
        np.testing.assert_allclose(y[0], np.exp(-1.0), rtol=1e-6)
        assert float(h) > 0
    # Backwards in time, too.
    back, _, _ = ode.solve(fn, (tf.fill([3], tf.constant(np.exp(-1.0), tf.float64)),
                                y0[1]), t1, t0, options, first_step=0.5)
    np.testing.assert_allclose(back[0], 1.0, rtol=1e-6)


def test_adjoint_seminorm_and_warm_start_cut_the_backward_solve(monkeypatch):
    """The backward solve's defaults (seminorm, step from the forward solve) take fewer
    evaluations than a plain solve of the augmented system, for the same gradients."""
    nfe, solve = [], ode.solve

    def counting_solve(*args, **kwargs):
        out = solve(*args, **kwargs)
        nfe.append(int(out[1].nfe))
        return out

    monkeypatch.setattr(adjoint.solvers, "solve", counting_solve)
    net = _ode_net(seed=3)
    x = _x((64, 2))
    grads = {}
    for fast in (True, False):
        b = bijectors.FFJORD(net, rtol=1e-6, atol=1e-6,
                             adjoint_options={"seminorm": fast, "reuse_step": fast})
        with tf.GradientTape() as tape:
            sol = b.solve(x, "inverse")
            loss = -tf.reduce_mean(sol.log_det - 0.5 * tf.reduce_sum(sol.state**2, -1))
        grads[fast] = tape.gradient(loss, net.trainable_variables)
    forward_fast, backward_fast, forward_plain, backward_plain = nfe
    assert forward_fast == forward_plain
    assert backward_fast < backward_plain
    for fast, plain in zip(grads[True], grads[False], strict=True):
        np.testing.assert_allclose(fast, plain, rtol=1e-3, atol=1e-6)


def test_adjoint_passive_integrals():
    """With `num_active`, passive integrals are left out of the backward solve; the
    gradients (also through the passive outputs and initial values) are unchanged."""
    options = ode.SolverOptions.make("dopri5", rtol=1e-9, atol=1e-9)
    w = tf.Variable([[-0.4, 0.9], [-0.7, 0.1]], dtype=tf.float64)
    t0, t1 = tf.constant(0.0, tf.float64), tf.constant(1.0, tf.float64)

    def fn(t, y, inputs):  # z' = tanh(z W + c); q' = |z|^2 (never read)
        dz = tf.tanh(tf.matmul(y[0], w) + inputs[0])
        return dz, tf.reduce_sum(tf.square(y[0]), -1)

    z0, q0, c = _x((3, 2)), _x((3,), seed=1), _x((3, 2), seed=2)
    grads = {}
    for num_active in (None, 1):
        with tf.GradientTape() as tape:
            tape.watch([z0, q0, c])
            (z1, q1), _ = adjoint.odeint_adjoint(fn, (z0, q0), (c,), t0, t1, options,
                                                 num_active=num_active)
            loss = tf.reduce_sum(z1**2) + tf.reduce_sum(tf.sin(q1))
        grads[num_active] = tape.gradient(loss, [z0, q0, c, w])
    for full, active in zip(grads[None], grads[1], strict=True):
        np.testing.assert_allclose(active, full, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(grads[1][1], np.cos(q1.numpy()), rtol=1e-9)
    for bad, error in ((0, ValueError), (3, ValueError), (1.5, TypeError)):
        with pytest.raises(error, match="num_active"):
            adjoint.odeint_adjoint(fn, (z0, q0), (c,), t0, t1, options, num_active=bad)


def test_exact_trace_matches_autodiff_slogdet():
    b = bijectors.FFJORD(_ode_net(), rtol=1e-10, atol=1e-10)
    x = _x((6, 2))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = b.forward(tf.identity(x))
    slogdet = np.linalg.slogdet(tape.batch_jacobian(y, x).numpy())[1]
    np.testing.assert_allclose(b.forward_log_det_jacobian(x, 1), slogdet, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(b.inverse(tf.identity(y)), x, atol=1e-7)


@pytest.mark.parametrize("activation", ["tanh", "softplus", "elu", "silu", "gelu", "sigmoid"])
def test_ode_net_jvp_matches_autodiff(activation):
    """The hand-written forward mode (used for the trace) against autodiff, with a
    conditional input (whose tangent must be zero) and a batch shape of rank 2."""
    net = testing.perturb_weights(nets.ODENet(3, (7, 5), activation, conditional_size=2,
                                              dtype="float64"), scale=0.5, seed=4)
    z, c = _x((2, 4, 3)), _x((2, 4, 2), seed=1)
    tangents = _x((5, 2, 4, 3), seed=2)
    t = tf.constant(0.3, tf.float64)
    f, jv = net.jvp(t, z, tangents, conditional_input=c)
    np.testing.assert_allclose(f, net(t, z, conditional_input=c), rtol=1e-12)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        out = net(t, z, conditional_input=c)
        rows = [out[..., i] for i in range(3)]
    jac = np.stack([tape.gradient(r, z).numpy() for r in rows], axis=-2)  # [2, 4, 3, 3]
    np.testing.assert_allclose(jv, np.einsum("...ij,k...j->k...i", jac, tangents.numpy()),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("hidden,activation", [
    ((), "tanh"), ((5,), "softplus"), ((6, 5, 4), "tanh"),
    *(((7, 5), a) for a in ("tanh", "softplus", "elu", "silu", "gelu", "sigmoid"))])
def test_ode_net_exact_trace_matches_autodiff(hidden, activation):
    """The closed-form trace (up to two hidden layers; deeper nets use `jvp`) against
    the trace of the autodiff Jacobian, with a conditional input and a rank-2 batch;
    its gradients (which training differentiates) against the forward-mode trace's."""
    net = testing.perturb_weights(nets.ODENet(3, hidden, activation, conditional_size=2,
                                              dtype="float64"), scale=0.5, seed=4)
    z, c = _x((2, 4, 3)), _x((2, 4, 2), seed=1)
    t = tf.constant(0.3, tf.float64)
    eye = tf.constant(np.broadcast_to(np.eye(3)[:, None, None], (3, 2, 4, 3)))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        out = net(t, z, conditional_input=c)
        rows = [out[..., i] for i in range(3)]
        f, trace = net.exact_trace(t, z, conditional_input=c)
        _, jv = net.jvp(t, z, eye, conditional_input=c)
        forward_mode = tf.reduce_sum(jv * eye, axis=[0, -1])
    jac = np.stack([tape.gradient(r, z).numpy() for r in rows], axis=-2)  # [2, 4, 3, 3]
    np.testing.assert_allclose(f, out, rtol=1e-12)
    np.testing.assert_allclose(trace, np.trace(jac, axis1=-2, axis2=-1), rtol=1e-10,
                               atol=1e-12)
    sources = [z, *(v.value for v in net.trainable_variables)]
    zero = tf.UnconnectedGradients.ZERO
    for a, b in zip(tape.gradient(trace, sources, unconnected_gradients=zero),
                    tape.gradient(forward_mode, sources, unconnected_gradients=zero),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("hidden", [(), (5,), (7, 5), (6, 5, 4), (12, 10), (11, 9, 10)])
def test_ode_net_thin_products_keep_values_and_gradients(monkeypatch, hidden):
    """The output layer of a low-dimensional field (and `W_2 W_0` in the closed-form
    trace) uses thin products, the hidden-to-hidden layers (and `s_1 Q`) wide products,
    both with hand-written gradients (fast under XLA:CPU): the field, its trace and
    forward-mode products, and their gradients with respect to `z`, the conditional
    input and every weight equal those of plain `tf.matmul`."""
    from tfp_flows.nets import products

    net = testing.perturb_weights(nets.ODENet(3, hidden, "tanh", conditional_size=2,
                                              dtype="float64"), scale=0.5, seed=4)
    z, c = _x((2, 4, 3)), _x((2, 4, 2), seed=1)
    tangents = _x((2, 2, 4, 3), seed=2)
    t = tf.constant(0.3, tf.float64)
    sources = [z, c, *(v.value for v in net.trainable_variables)]

    def outputs_and_gradients():
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([z, c])
            f = net(t, z, conditional_input=c)
            _, trace = net.exact_trace(t, z, conditional_input=c)
            _, jv = net.jvp(t, z, tangents, conditional_input=c)
            outputs = [f, trace, jv]
            # sin: cotangents that differ across rows and columns.
            losses = [tf.reduce_sum(tf.sin(o)) for o in outputs]
        grads = [tape.gradient(loss, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO)
                 for loss in losses]
        return outputs, grads

    thin_outputs, thin_grads = outputs_and_gradients()
    monkeypatch.setattr(products, "THIN", 0)  # every product a plain tf.matmul
    monkeypatch.setattr(products, "matmul", tf.matmul)
    plain_outputs, plain_grads = outputs_and_gradients()
    for a, b in zip(thin_outputs, plain_outputs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    for grads_a, grads_b in zip(thin_grads, plain_grads, strict=True):
        for a, b in zip(grads_a, grads_b, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("rows", [1, 6, 8, 13])
@pytest.mark.parametrize("jit", [False, True])
def test_wide_matmul_gradient_matches_matmul(rows, jit):
    """`wide_matmul`'s kernel gradient sums the batch in `CHUNKS` chunks (zero rows
    padded): the same values as `tf.matmul`'s, also for a batch size unknown when traced
    and not a multiple of the chunks, with and without XLA."""
    from tfp_flows.nets import products

    x, kernel = _x((rows, 10)).numpy(), _x((10, 9), seed=1).numpy()
    weights = _x((rows, 9), seed=2).numpy()

    def gradients(x, kernel, weights):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([x, kernel])
            wide = tf.reduce_sum(tf.sin(products.wide_matmul(x, kernel)) * weights)
            plain = tf.reduce_sum(tf.sin(tf.matmul(x, kernel)) * weights)
        return (wide, plain, tape.gradient(wide, [x, kernel]),
                tape.gradient(plain, [x, kernel]))

    spec = [tf.TensorSpec([None, 10], tf.float64), tf.TensorSpec([10, 9], tf.float64),
            tf.TensorSpec([None, 9], tf.float64)]
    fn = tf.function(gradients, jit_compile=jit, input_signature=spec, autograph=False)
    wide, plain, wide_grads, plain_grads = fn(x, kernel, weights)
    np.testing.assert_allclose(wide, plain, rtol=1e-12)
    for a, b in zip(wide_grads, plain_grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_thin_matmul_gradient_matches_matmul():
    from tfp_flows.nets import products

    x, kernel = _x((6, 5)), _x((5, 3), seed=1)
    weights = _x((6, 3), seed=2)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, kernel])
        thin = tf.reduce_sum(products.thin_matmul(x, kernel) * weights)
        plain = tf.reduce_sum(tf.matmul(x, kernel) * weights)
    for a, b in zip(tape.gradient(thin, [x, kernel]), tape.gradient(plain, [x, kernel]),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(thin, plain, rtol=1e-12)


class _ReverseModeOnly(keras.layers.Layer):
    """An ODENet without `jvp`: FFJORD must fall back to vector-Jacobian products."""

    def __init__(self, net, **kwargs):
        super().__init__(dtype=net.dtype, **kwargs)
        self.net, self.event_size = net, net.event_size
        self.built = True

    def call(self, t, z, conditional_input=None):
        return self.net(t, z, conditional_input=conditional_input)


@pytest.mark.parametrize("regularize", [True, False])
@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_forward_and_reverse_mode_trace_agree(trace, regularize):
    """ODENet's fast paths (forward mode; the closed-form exact trace when nothing
    needs the products themselves) against vector-Jacobian products."""
    net = _ode_net(conditional_size=1)
    x, c = _x((5, 2)), _x((5, 1), seed=1)
    kwargs = dict(trace=trace, solver="rk4", num_steps=4)
    fast = bijectors.FFJORD(net, **kwargs).solve(x, conditional_input=c, seed=(1, 2),
                                                 regularize=regularize)
    slow = bijectors.FFJORD(_ReverseModeOnly(net), **kwargs).solve(
        x, conditional_input=c, seed=(1, 2), regularize=regularize)
    # Same probes, so the same trace estimate v^T J v. The Frobenius estimates differ
    # with Hutchinson probes (||J v||^2 vs ||v^T J||^2: both unbiased, not equal).
    compared = 4 if trace == "exact" and regularize else 3 if regularize else 2
    for a, b in zip(fast[:compared], slow[:compared], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_log_det_error_control():
    """z's error is always controlled, the log-det's with the exact trace (or when
    asked); a Hutchinson log-det and the RNODE integrals are integrated along the same
    steps without forcing smaller ones. The Hutchinson estimate's own noise is far
    above the solver error that this leaves in it."""
    net = testing.perturb_weights(nets.ODENet(2, (16, 16), dtype="float64"), scale=2.0,
                                  seed=0)  # stiff enough that the log-det limits the steps
    x = _x((32, 2))

    def solve(trace, control=None, regularize=False, tol=1e-6):
        b = bijectors.FFJORD(net, trace=trace, rtol=tol, atol=tol, control_log_det=control,
                             max_num_steps=5000)
        @tf.function  # eager while loops cost seconds at these step counts
        def run():
            return b.solve(x, "inverse", seed=(1, 2), regularize=regularize)

        return run()

    reference = solve("exact", tol=1e-8)
    exact, exact_free = solve("exact"), solve("exact", control=False)
    hutchinson, hutchinson_controlled = solve("hutchinson"), solve("hutchinson", control=True)
    # Without the log-det in the norm the steps follow z alone, whatever the trace.
    assert int(hutchinson.nfe) == int(exact_free.nfe) < int(hutchinson_controlled.nfe)
    assert int(exact_free.nfe) < int(exact.nfe)
    np.testing.assert_array_equal(hutchinson.state, exact_free.state)
    np.testing.assert_allclose(exact.state, reference.state, atol=1e-5)
    np.testing.assert_allclose(exact_free.state, reference.state, atol=1e-3)
    exact_error = np.max(np.abs(exact.log_det - reference.log_det))
    free_error = np.max(np.abs(exact_free.log_det - reference.log_det))
    noise = np.std(hutchinson.log_det - reference.log_det)
    assert exact_error < 1e-4 and exact_error < free_error < 0.01 * noise
    # The RNODE penalties never force smaller steps either.
    assert int(solve("hutchinson", regularize=True).nfe) == int(hutchinson.nfe)


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(probe):
    """One solve of 2000 copies of x: every copy draws its own probe, so the
    copies' log-dets are 2000 i.i.d. estimates. With the same fixed-step solver
    they have the exact-trace value as their expectation (the trajectory does not
    depend on the probe and the estimate is linear in v v^T), so the sample mean
    is within 5 standard errors of it (a false failure has probability < 1e-6)."""
    net = _ode_net()
    x = tf.repeat(_x((1, 2)), 2000, axis=0)
    kwargs = dict(solver="rk4", num_steps=8)
    exact = bijectors.FFJORD(net, **kwargs).solve(x[:1], "inverse").log_det.numpy()[0]
    est = bijectors.FFJORD(net, trace="hutchinson", probe=probe, **kwargs).solve(
        x, "inverse", seed=(3, 4)).log_det.numpy()
    assert est.std() > 1e-3  # genuinely random
    assert abs(est.mean() - exact) < 5 * est.std() / np.sqrt(est.size), (est.mean(), exact)
    # More probes per solve: the variance falls like 1 / num_probes.
    est8 = bijectors.FFJORD(net, trace="hutchinson", probe=probe, num_probes=8, **kwargs).solve(
        x, "inverse", seed=(3, 4)).log_det.numpy()
    assert est8.std() < 0.6 * est.std()


def test_hutchinson_seeds_and_switching_trace():
    net = _ode_net()
    b = bijectors.FFJORD(net, solver="rk4", num_steps=8, trace="hutchinson")
    flow = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(2, tf.float64)), b)
    x = _x((5, 2))
    lp1 = flow.log_prob(x, bijector_kwargs={"seed": (1, 2)})
    np.testing.assert_array_equal(lp1, flow.log_prob(tf.identity(x),
                                                     bijector_kwargs={"seed": (1, 2)}))
    assert not np.allclose(lp1, flow.log_prob(x, bijector_kwargs={"seed": (5, 6)}))
    exact = bijectors.FFJORD(net, solver="rk4", num_steps=8)
    expected = tfd.TransformedDistribution(flow.distribution, exact).log_prob(x)
    # Per call, and by switching to a copy with the exact trace: no stale cached estimate.
    np.testing.assert_allclose(flow.log_prob(x, bijector_kwargs={"trace": "exact"}), expected)
    switched = flows.with_trace(flow, "exact")
    np.testing.assert_allclose(switched.log_prob(x, bijector_kwargs={"seed": (1, 2)}), expected)
    # The original is unchanged: still the seeded estimate.
    np.testing.assert_array_equal(flow.log_prob(x, bijector_kwargs={"seed": (1, 2)}), lp1)


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_adjoint_gradients_equal_backprop(trace):
    net = _ode_net(conditional_size=1)
    x, c = _x((4, 2)), _x((4, 1), seed=1)
    grads = {}
    for gradient in ("backprop", "adjoint"):
        b = bijectors.FFJORD(net, gradient=gradient, rtol=1e-10, atol=1e-10, trace=trace)
        with tf.GradientTape() as tape:
            tape.watch([x, c])
            sol = b.solve(x, "inverse", conditional_input=c, seed=(7, 8))
            loss = tf.reduce_sum(sol.log_det - 0.5 * tf.reduce_sum(sol.state**2, -1))
        grads[gradient] = tape.gradient(loss, [x, c, *net.trainable_variables])
    assert len(grads["adjoint"]) == 2 + len(net.trainable_variables)
    for g_back, g_adj in zip(grads["backprop"], grads["adjoint"], strict=True):
        assert g_adj is not None and np.any(np.asarray(g_adj) != 0)
        np.testing.assert_allclose(g_adj, g_back, rtol=1e-5, atol=1e-7)


def test_rnode_regularisers_linear_field():
    """dz/dt = a z: int_0^1 ||f||^2 dt = a^2 ||x||^2 (e^{2a} - 1) / (2a) and
    int_0^1 ||J||_F^2 dt = a^2 D, in both directions."""
    a = 0.4
    b = bijectors.FFJORD(Linear(a * np.eye(3), dtype="float64"), rtol=1e-10, atol=1e-10)
    x = _x((5, 3))
    sol = b.solve(x, "forward", regularize=True)
    sq = np.sum(x.numpy() ** 2, -1)
    np.testing.assert_allclose(sol.kinetic, a**2 * sq * np.expm1(2 * a) / (2 * a), rtol=1e-7)
    np.testing.assert_allclose(sol.jacobian_frobenius, np.full(5, 3 * a**2), rtol=1e-7)
    back = b.solve(sol.state, "inverse", regularize=True)
    np.testing.assert_allclose(back.kinetic, sol.kinetic, rtol=1e-7)
    assert b.solve(x, "forward").kinetic is None


def test_rnode_objective_penalty_only_in_training():
    flow = flows.ffjord(2, hidden_units=(8,), solver="rk4", num_steps=4, actnorm=True,
                        dtype="float64")
    testing.perturb_weights(flow, seed=2)
    x = _x((6, 2))
    objective = RNODE(kinetic_weight=0.5, jacobian_weight=0.25)
    score, penalty = objective(flow, x, seed=(1, 2), training=True)
    (block,) = flows.ffjord_blocks(flow)
    h = flow.bijector.bijectors[0].inverse(x)
    sol = block.solve(h, "inverse", regularize=True)
    expected = 0.5 * np.mean(sol.kinetic) + 0.25 * np.mean(sol.jacobian_frobenius)
    np.testing.assert_allclose(penalty, expected, rtol=1e-10)
    np.testing.assert_allclose(score, flow.log_prob(x), rtol=1e-10)
    np.testing.assert_allclose(objective(flow, x, seed=(1, 2), training=False), score)
    assert RNODE.from_config(objective.get_config()).jacobian_weight == 0.25


def test_flow_builder_passes_solver_options():
    flow = flows.ffjord(2, num_blocks=2, trace="hutchinson", control_log_det=True,
                        adjoint_options={"seminorm": False})
    for block in flows.ffjord_blocks(flow):
        assert block.parameters["control_log_det"] is True
        assert block.parameters["adjoint_options"] == {"seminorm": False}
    with pytest.raises(TypeError, match="`control_log_det` must be None"):
        flows.ffjord(2, control_log_det=1)


def test_sample_and_log_prob_is_one_solve():
    flow = flows.ffjord(2, hidden_units=(8,), solver="rk4", num_steps=4)
    (block,) = flows.ffjord_blocks(flow)
    testing.perturb_weights(flow, seed=3)
    calls = []
    solve = block.solve
    block.solve = lambda *a, **k: calls.append(a[1]) or solve(*a, **k)
    y, lp = flow.experimental_sample_and_log_prob(7, seed=(1, 2))
    assert calls == ["forward"]
    np.testing.assert_allclose(lp, flow.log_prob(tf.identity(y)), rtol=1e-4, atol=1e-4)
    assert calls == ["forward", "inverse"]  # a fresh tensor is a new solve


@pytest.mark.slow
def test_reverse_kl_trains():
    flow = flows.ffjord(2, hidden_units=(8,), solver="rk4", num_steps=4)
    target = tfd.MultivariateNormalDiag([1.0, -1.0], [0.5, 0.5]).log_prob
    model = FlowModel(flow, objective=ReverseKL(target, num_samples=64))
    model.compile(keras.optimizers.Adam(1e-2))
    history = model.fit(steps_per_epoch=5, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


@pytest.mark.slow
def test_fit_jit_compile_with_hutchinson_and_rnode():
    model = FlowModel.from_flow("ffjord", event_size=2, hidden_units=(8,), solver="rk4",
                                num_steps=4, trace="hutchinson",
                                objective=RNODE(kinetic_weight=0.01, jacobian_weight=0.01))
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.compile(keras.optimizers.Adam(1e-2), jit_compile=True)
    x = np.random.default_rng(0).standard_normal((64, 2)).astype("float32") * 2
    history = model.fit(x, batch_size=32, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert all(np.any(w.numpy() != b) for w, b in zip(model.trainable_weights, before, strict=True))
    model.with_trace("exact")  # evaluate the Hutchinson-trained weights with the exact trace
    assert np.all(np.isfinite(model.log_prob(x[:8])))
    assert np.isfinite(model.evaluate(x, batch_size=32, verbose=0))


@pytest.mark.slow
def test_fit_under_mirrored_strategy_with_adjoint():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = FlowModel.from_flow("ffjord", event_size=2, hidden_units=(8,), solver="rk4",
                                    num_steps=3, gradient="adjoint", objective=RNODE(0.01))
        model.compile(keras.optimizers.Adam(1e-2))
    x = np.random.default_rng(0).standard_normal((32, 2)).astype("float32")
    history = model.fit(x, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(solver="rk45"), ValueError, "`solver` must be one of"),
    (dict(solver=4), TypeError, "`solver` must be one of"),
    (dict(trace="approx"), ValueError, "`trace` must be one of"),
    (dict(probe="uniform"), ValueError, "`probe` must be one of"),
    (dict(gradient="checkpoint"), ValueError, "`gradient` must be one of"),
    (dict(rtol=0.0), ValueError, "`rtol` must be a positive number; got 0.0"),
    (dict(atol=-1e-5), ValueError, "`atol` must be a positive number"),
    (dict(num_steps=0), ValueError, "`num_steps` must be a positive integer; got 0"),
    (dict(max_num_steps=2.5), TypeError, "`max_num_steps` must be a positive integer"),
    (dict(num_probes=0), ValueError, "`num_probes` must be a positive integer"),
    (dict(t0=1.0, t1=1.0), ValueError, "`t1` must be greater than `t0`; got t0=1.0, t1=1.0"),
    (dict(t1="1"), TypeError, "`t1` must be a Python number"),
    (dict(adjoint_options={"norm": "seminorm"}), ValueError, "`adjoint_options` keys must"),
    (dict(adjoint_options={"seminorm": 1}), TypeError, "must be a bool; got 1"),
    (dict(adjoint_options=True), TypeError, "`adjoint_options` must be a dict"),
    (dict(control_log_det="yes"), TypeError, "`control_log_det` must be None .* got 'yes'"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        bijectors.FFJORD(_ode_net(), **kwargs)


def test_bad_inputs_and_objects():
    with pytest.raises(TypeError, match="`vector_field` must be a Keras 3 layer"):
        bijectors.FFJORD(lambda t, z: z)
    b = bijectors.FFJORD(_ode_net(), solver="euler", num_steps=1)
    with pytest.raises(ValueError, match=r"FFJORD: expected inputs of shape \[..., 2\]"):
        b.forward(_x((4, 3)))
    with pytest.raises(ValueError, match="`trace` must be one of"):
        b.with_trace("stochastic")
    with pytest.raises(AttributeError, match=r"use `bijector.with_trace\(trace\)`"):
        b.trace = "hutchinson"
    with pytest.raises(TypeError, match="has dtype float32 but the vector field"):
        b.forward(_x((4, 2), tf.float32))
    with pytest.raises(ValueError, match="`direction` must be one of"):
        b.solve(_x((4, 2)), "backward")
    with pytest.raises(ValueError, match="`kinetic_weight` must be a non-negative number"):
        RNODE(kinetic_weight=-1.0)
    with pytest.raises(TypeError, match="RNODE needs at least one FFJORD"):
        RNODE()(flows.real_nvp(2, num_layers=1, hidden_units=(4,)), _x((3, 2), tf.float32))
    with pytest.raises(ValueError, match="`hidden_units\\[0\\]` must be a positive integer"):
        nets.ODENet(2, (0,))
    with pytest.raises(ValueError, match="`activation` must be one of"):
        nets.ODENet(2, activation="relu")
