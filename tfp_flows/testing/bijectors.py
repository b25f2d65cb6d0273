"""Generic checks that every bijector in the library must pass.

`BIJECTORS` maps a name to a `BijectorCase`: a constructor `make(dtype)` and
the event size it expects. `tests/test_generic_bijectors.py` runs every check
in `CHECKS` on every case, eagerly, under `tf.function` and under
`tf.function(jit_compile=True)`. Adding a bijector to the library means
adding one line to `BIJECTORS`; a user's own bijector is checked with
`run_checks(BijectorCase(...), mode)` (the registry itself is read-only).

Weights are perturbed before checking (`perturb_weights`): conditioners start
at zero (the identity), which would make the log-det checks trivially true.
"""

import dataclasses
import types

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows import bijectors as tffb
from tfp_flows import flows
from tfp_flows.internal import keras_owned
from tfp_flows.nets.ode_net import ODENet

BATCH_SHAPES = ((), (3,), (2, 3))
MODES = ("eager", "function", "jit")


@dataclasses.dataclass(frozen=True)
class BijectorCase:
    """How to build one bijector for the generic checks.

    Attributes:
      make: `make(dtype) -> tfb.Bijector`.
      event_size: size of the (rank-1) event.
      rtol: relative tolerance of the float64 Jacobian and round-trip checks;
        tighter than 1e-6 for closed-form maps, looser for ODE solves.
      input_scale: inputs are `input_scale * N(0, I)`.
      slow_modes: modes whose run is slow (XLA compiles of 15-45 s on two CPU
        cores); the test suite marks them `slow`.
    """

    make: object
    event_size: int = 4
    rtol: float = 1e-6
    input_scale: float = 1.0
    slow_modes: tuple = ()


def _chain_of(flow_fn, **kwargs):
    return lambda dtype: flow_fn(event_size=4, dtype=dtype, **kwargs).bijector


BIJECTORS = types.MappingProxyType({
    "act_norm": BijectorCase(lambda dtype: tffb.ActNorm(4, dtype=dtype)),
    "lu_linear": BijectorCase(lambda dtype: tffb.LULinear(4, seed=1, dtype=dtype)),
    # real_nvp's XLA run is slow: real_nvp_conditional below compiles the same couplings
    # with a routed condition by default.
    "real_nvp": BijectorCase(_chain_of(flows.real_nvp, num_layers=2, hidden_units=(8,)),
                             slow_modes=("jit",)),
    # XLA compiles of these cost 15-45 s each on two cores; the same building blocks are
    # compiled under XLA by default-run tests elsewhere, so their jit runs are `slow`.
    "real_nvp_actnorm": BijectorCase(
        _chain_of(flows.real_nvp, num_layers=2, hidden_units=(8,), actnorm=True),
        slow_modes=("jit",)),
    "glow": BijectorCase(_chain_of(flows.glow, num_layers=2, hidden_units=(8,)),
                         slow_modes=("jit",)),
    "maf": BijectorCase(_chain_of(flows.maf, num_layers=2, hidden_units=(8,)),
                        slow_modes=("jit",)),
    # One layer: TFP's spline graph is large and chains are covered above.
    "neural_spline": BijectorCase(_chain_of(flows.neural_spline, num_layers=1, hidden_units=(8,),
                                            bound=3.0), slow_modes=("jit",)),
    # Exact-trace FFJORD, RK4 with 16 fixed steps: the integrated trace and the autodiff
    # Jacobian of the discrete RK4 map agree to O(h^4) (measured ~1e-6 in float64), hence rtol.
    "ffjord": BijectorCase(lambda dtype: tffb.FFJORD(
        ODENet(4, (8,), dtype=dtype.name), solver="rk4", num_steps=16), rtol=1e-5,
        slow_modes=("function", "jit")),
    # Funnel maps F(.; x_minus) with a fixed x_minus baked in: the conditional affine coupling
    # map and the tiled (convolutional) FunnelLinear, 2 tiles of 2 channels. (The conditional
    # spline map is checked eagerly in tests/test_funnel.py: its traced graph takes ~2 min.)
    "funnel_affine": BijectorCase(lambda dtype: tffb.FixedConditional(
        tffb.ElementwiseAffine(4, 2, hidden_units=(8,), dtype=dtype), [0.3, -1.2])),
    "funnel_linear_tiled": BijectorCase(lambda dtype: tffb.FixedConditional(
        tffb.FunnelLinear(2, 3, num_tiles=2, seed=1, dtype=dtype),
        [0.3, -1.2, 0.5, 0.9, -0.4, 1.1])),
    # LGF layer G(.; u) with a fixed index u baked in (g = one MADE layer / identity), and the
    # paper's alternative: u concatenated into a coupling conditioner.
    "continuously_indexed_maf": BijectorCase(lambda dtype: tffb.FixedConditional(
        tffb.ContinuouslyIndexed(4, 3, flows.maf(4, 1, hidden_units=(8,), dtype=dtype).bijector,
                                 hidden_units=(8,), activation="tanh", dtype=dtype),
        [0.5, -1.0, 0.3])),
    "continuously_indexed_identity": BijectorCase(lambda dtype: tffb.FixedConditional(
        tffb.ContinuouslyIndexed(4, 2, None, hidden_units=(8,), activation="tanh", dtype=dtype),
        [0.7, -0.4])),
    "lgf_coupling_index": BijectorCase(lambda dtype: tffb.FixedConditional(
        flows.lgf_real_nvp(4, 1, index_size=2, index_mode="coupling", hidden_units=(8,),
                           dtype=dtype).layers[0], [0.7, -0.4])),
    "kernel_coupling_se": BijectorCase(
        lambda dtype: tffb.KernelCoupling(4, 5, "squared_exponential", seed=1, dtype=dtype)),
    # The Matern kernels change one elementwise function of the same graph: their XLA runs are
    # slow (the squared-exponential one and ferumal_shared compile by default).
    "kernel_coupling_matern32": BijectorCase(
        lambda dtype: tffb.KernelCoupling(4, 5, "matern32", seed=1, dtype=dtype),
        slow_modes=("jit",)),
    "kernel_coupling_matern52": BijectorCase(
        lambda dtype: tffb.KernelCoupling(3, 5, "matern52", seed=1, dtype=dtype), event_size=3,
        slow_modes=("jit",)),
    # Conditional flows at a fixed condition: the condition is routed through the chain.
    "real_nvp_conditional": BijectorCase(lambda dtype: tffb.FixedConditional(
        flows.real_nvp(4, 2, hidden_units=(8,), conditional_size=2, dtype=dtype).bijector,
        [0.5, -0.3])),
    "maf_conditional": BijectorCase(lambda dtype: tffb.FixedConditional(
        flows.maf(4, 1, hidden_units=(8,), conditional_size=2, dtype=dtype).bijector,
        [0.5, -0.3])),
    "ferumal_shared": BijectorCase(_chain_of(flows.ferumal, num_blocks=1, num_inducing=5,
                                             inducing="shared")),
})


def keras_weights(obj):
    """Trainable Keras weights reachable from a TFP object."""
    return [w for layer in keras_owned.find_keras_layers(obj) for w in layer.trainable_weights]


def perturb_weights(obj, scale=0.3, seed=0):
    """Adds `scale * N(0, 1)` noise to every trainable Keras weight in `obj`."""
    rng = np.random.default_rng(seed)
    for w in keras_weights(obj):
        noise = rng.standard_normal(tuple(w.shape)) * scale
        w.assign(w.numpy() + noise.astype(w.dtype))
    return obj


def build(case, dtype=tf.float64, seed=0):
    """Builds `case` (a `BijectorCase` or a registry name) with perturbed weights."""
    case = BIJECTORS[case] if isinstance(case, str) else case
    bijector = case.make(tf.as_dtype(dtype))
    return perturb_weights(bijector, seed=seed), case


def compile_fn(fn, mode):
    """`fn` as run in `mode`: as is ("eager"), in `tf.function` ("function") or XLA ("jit")."""
    if mode == "eager":
        return fn
    if mode == "function":
        return tf.function(fn)
    if mode == "jit":
        return tf.function(fn, jit_compile=True)
    raise ValueError(f"`mode` must be one of {MODES}; got {mode!r}.")


def inputs(case, batch_shape, dtype, seed=0):
    """Seeded normal inputs `[*batch_shape, case.event_size]` scaled by `case.input_scale`."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((*batch_shape, case.event_size)) * case.input_scale
    return tf.constant(x, dtype)


def _fresh(t):
    # TFP caches forward/inverse by input tensor; a copy forces recomputation.
    return tf.constant(np.asarray(t))


def _jacobian(fn, t, event_size):
    """`fn(t)` and the rows of d fn / d t, one reverse pass per output dimension.

    `batch_jacobian` vectorises with pfor, which XLA cannot compile through a
    while loop (MAF's sampling direction); D gradient calls compile everywhere.
    """
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(t)
        y = fn(tf.identity(t))  # identity: miss TFP's cache, which holds untaped results
        components = [y[..., i] for i in range(event_size)]
    rows = [tape.gradient(c, t) for c in components]
    return y, tf.stack(rows, axis=-2)


def _compute(bijector, case, mode):
    """Every tensor the checks need, from one traced function per mode."""
    dtype = bijector.dtype or tf.float64
    x = inputs(case, (5,), dtype)
    x_batches = [inputs(case, b, dtype, seed=3) for b in BATCH_SHAPES]
    weights = keras_weights(bijector)
    variables = list(bijector.trainable_variables)

    def fn(x, x_batches):
        out = {"y": bijector.forward(x), "x_inv": bijector.inverse(x)}
        y, out["jacobian"] = _jacobian(bijector.forward, x, case.event_size)
        out["fldj"] = bijector.forward_log_det_jacobian(x, event_ndims=1)
        # Use identity to miss TFP's cache: ildj must be computed, not looked up.
        out["ildj_of_y"] = bijector.inverse_log_det_jacobian(tf.identity(y), event_ndims=1)
        out["batch"] = [(bijector.forward(t), bijector.forward_log_det_jacobian(t, event_ndims=1),
                         bijector.inverse_log_det_jacobian(t, event_ndims=1)) for t in x_batches]
        with tf.GradientTape(persistent=True) as tape:
            z = bijector.inverse(tf.identity(x))
            loss = tf.reduce_sum(bijector.inverse_log_det_jacobian(tf.identity(x), event_ndims=1)
                                 - 0.5 * tf.reduce_sum(z**2, -1))
        out["keras_grads"] = tape.gradient(loss, weights)
        out["tfp_grads"] = tape.gradient(loss, variables)
        return out

    out = compile_fn(fn, mode)(x, x_batches)
    # Round trips with fresh tensors, through the same compiled mode.
    fwd = compile_fn(lambda t: bijector.forward(t), mode)
    inv = compile_fn(lambda t: bijector.inverse(t), mode)
    out["x"], out["x_batches"] = x, x_batches
    out["x_round_trip"] = inv(_fresh(out["y"]))
    out["y_round_trip"] = fwd(_fresh(out["x_inv"]))
    out["weights"], out["variables"] = weights, variables
    return out


def _close(actual, desired, tol, what):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(desired), rtol=tol, atol=tol,
                               err_msg=what)


def check_round_trip(out, case):
    """inverse(forward(x)) == x and forward(inverse(x)) == x, with fresh tensors."""
    _close(out["x_round_trip"], out["x"], case.rtol * 10, "inverse(forward(x)) != x")
    _close(out["y_round_trip"], out["x"], case.rtol * 10, "forward(inverse(x)) != x")


def check_log_det_consistency(out, case):
    """fldj(x) == -ildj(forward(x))."""
    _close(out["fldj"], -np.asarray(out["ildj_of_y"]), case.rtol * 10, "fldj != -ildj")


def check_jacobian(out, case):
    """fldj(x) == log|det dforward/dx| from autodiff (run the checks in float64)."""
    # slogdet outside the compiled function: XLA has no LogMatrixDeterminant kernel.
    autodiff = np.linalg.slogdet(np.asarray(out["jacobian"]))[1]
    _close(out["fldj"], autodiff, case.rtol * 100, "fldj != log|det J| (autodiff)")


def check_batch_shapes(out, case):
    """Outputs and log-dets have the right shapes for batch shapes (), (3,), (2, 3)."""
    for batch_shape, (y, fldj, ildj) in zip(BATCH_SHAPES, out["batch"], strict=True):
        assert tuple(y.shape) == (*batch_shape, case.event_size), (batch_shape, y.shape)
        assert tuple(fldj.shape) == batch_shape, (batch_shape, fldj.shape)
        assert tuple(ildj.shape) == batch_shape, (batch_shape, ildj.shape)


def check_gradients(out, case):
    """Every trainable weight (Keras and TFP views) gets a finite, non-zero gradient."""
    weights = out["weights"]
    if not weights:
        raise AssertionError("the bijector has no trainable Keras weights")
    for w, g in zip(weights, out["keras_grads"], strict=True):
        assert g is not None, f"no gradient reaches Keras weight {w.path}"
        g = np.asarray(g)
        assert np.all(np.isfinite(g)), f"non-finite gradient for {w.path}"
        assert np.any(g != 0), f"zero gradient for {w.path}"
    assert len(out["variables"]) == len(weights), "TFP and Keras see different parameters"
    assert all(g is not None for g in out["tfp_grads"]), "a TFP variable gets no gradient"


CHECKS = {
    "round_trip": check_round_trip,
    "log_det_consistency": check_log_det_consistency,
    "jacobian": check_jacobian,
    "batch_shapes": check_batch_shapes,
    "gradients": check_gradients,
}


def run_checks(case, mode, dtype=tf.float64, checks=None):
    """Runs `checks` (default: all) on `case` (a `BijectorCase` or a registry name) in `mode`.

    Raises `AssertionError` listing every check that failed, by name.
    """
    name = case if isinstance(case, str) else type(case.make).__name__
    bijector, case = build(case, dtype)
    out = _compute(bijector, case, mode)
    failures = []
    for check in checks or sorted(CHECKS):
        try:
            CHECKS[check](out, case)
        except AssertionError as err:
            failures.append(f"{check}: {err}")
    if failures:
        raise AssertionError(f"{name} [{mode}] failed:\n" + "\n".join(failures))


__all__ = ["BATCH_SHAPES", "BIJECTORS", "CHECKS", "MODES", "BijectorCase", "build",
           "check_batch_shapes", "check_gradients", "check_jacobian",
           "check_log_det_consistency", "check_round_trip", "keras_weights", "perturb_weights",
           "run_checks"]

# Keep `keras` and `tfp` imported for users who extend the registry from here.
del keras, tfp
