"""ODE solvers written for XLA: fixed-step Euler / midpoint / RK4 and adaptive Dormand–Prince.

Every solver integrates `dy/dt = fn(t, y)` for a tuple of tensors `y` from `t0`
to `t1` (either direction: `t1 < t0` integrates backwards) with a
`tf.while_loop` whose loop variables keep static shapes and which has a
`maximum_iterations`, so the solve, and gradients through it, compile under
`tf.function(jit_compile=True)`.

* Fixed-step methods take `num_steps` equal steps; the number of function
  evaluations (NFE) is `num_steps` times the number of stages (1, 2, 4).
* `dopri5` is the embedded 5(4) Runge–Kutta pair of Dormand & Prince (1980)
  with first-same-as-last and Hairer's initial-step rule. A step is accepted
  when the RMS of `err / (atol + rtol * max(|y_old|, |y_new|))` is at most 1
  (the maximum over the tensors of `y`); the step size follows
  `h <- h * clip(0.9 * err^(-1/5), 0.2, 10)`. Step-size control is kept out of
  the gradient (`tf.stop_gradient`), so backprop differentiates the discrete
  map that was actually taken. At most `max_num_steps` attempted steps: a solve
  that did not reach `t1` reports `success=False` (it never fails silently when
  `validate_args=True` in `odeint`).
* `dopri5` takes two optional controls, used by the adjoint backward solve
  (`tfp_flows.ode.adjoint`): `first_step`, a starting step size that
  replaces Hairer's rule (saving its extra evaluation; a step that is too large
  is rejected and shrunk like any other), and `error_size`, the number of
  leading tensors of `y` that enter the error norm (a *seminorm*, Kidger et
  al., 2021: integrals that never feed back into the dynamics, such as the
  parameter adjoints, are integrated along without forcing smaller steps).

#### References

[1]: J. R. Dormand, P. J. Prince. A family of embedded Runge–Kutta formulae.
     Journal of Computational and Applied Mathematics, 6(1), 1980.
[2]: E. Hairer, S. P. Nørsett, G. Wanner. Solving Ordinary Differential
     Equations I, Section II.4 (starting step size), 1993.
[3]: Patrick Kidger, Ricky T. Q. Chen, Terry Lyons. "Hey, that's not an ODE":
     Faster ODE Adjoints via Seminorms. ICML 2021.
"""

import collections

import tensorflow as tf

from tfp_flows.internal import validation

SOLVERS = ("euler", "midpoint", "rk4", "dopri5")
FIXED_STEP_STAGES = {"euler": 1, "midpoint": 2, "rk4": 4}

SolveStats = collections.namedtuple("SolveStats", ["nfe", "num_steps", "success"])

# Dormand–Prince 5(4) tableau: nodes, stage weights, 5th-order weights, and the
# difference between the 5th- and 4th-order weights (error estimate).
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
)
_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_E = tuple(b5 - b4 for b5, b4 in zip(_B5, _B4, strict=True))


class SolverOptions(collections.namedtuple(
        "SolverOptions", ["solver", "num_steps", "rtol", "atol", "max_num_steps"])):
    """Validated solver settings (see `odeint`)."""

    __slots__ = ()

    @classmethod
    def make(cls, solver="dopri5", num_steps=8, rtol=1e-5, atol=1e-5, max_num_steps=1000):
        if not isinstance(solver, str):
            raise TypeError(f"`solver` must be one of {list(SOLVERS)}; got {solver!r}.")
        validation.one_of(solver, "solver", SOLVERS)
        return cls(solver, validation.positive_int(num_steps, "num_steps"),
                   validation.positive_float(rtol, "rtol"),
                   validation.positive_float(atol, "atol"),
                   validation.positive_int(max_num_steps, "max_num_steps"))


def _axpy(y, h, ks, coeffs):
    """`y + h * sum_i coeffs[i] * ks[i]` for tuples of tensors (zero coefficients skipped)."""
    out = []
    for j, yj in enumerate(y):
        acc = yj
        for c, k in zip(coeffs, ks, strict=True):
            if c != 0.0:
                acc = acc + (h * c) * k[j]
        out.append(acc)
    return tuple(out)


def _fixed_step(fn, method, t, y, h):
    if method == "euler":
        return _axpy(y, h, [fn(t, y)], [1.0])
    if method == "midpoint":
        k1 = fn(t, y)
        return _axpy(y, h, [fn(t + h / 2, _axpy(y, h, [k1], [0.5]))], [1.0])
    k1 = fn(t, y)
    k2 = fn(t + h / 2, _axpy(y, h, [k1], [0.5]))
    k3 = fn(t + h / 2, _axpy(y, h, [k2], [0.5]))
    k4 = fn(t + h, _axpy(y, h, [k3], [1.0]))
    return _axpy(y, h, [k1, k2, k3, k4], [1 / 6, 1 / 3, 1 / 3, 1 / 6])


def _fixed(fn, y0, t0, t1, options):
    h = (t1 - t0) / options.num_steps

    def body(i, y):
        t = t0 + tf.cast(i, t0.dtype) * h
        return i + 1, _fixed_step(fn, options.solver, t, y, h)

    _, y1 = tf.while_loop(lambda i, y: i < options.num_steps, body, (tf.constant(0), y0),
                          maximum_iterations=options.num_steps)
    nfe = options.num_steps * FIXED_STEP_STAGES[options.solver]
    return y1, SolveStats(tf.constant(nfe), tf.constant(options.num_steps), tf.constant(True))


def _rms_norm(tensors):
    """Max over the tensors of their root-mean-square (a scalar)."""
    return tf.reduce_max(tf.stack([tf.sqrt(tf.reduce_mean(tf.square(t))) for t in tensors]))


def _initial_step(fn, t0, y0, f0, direction, options, controlled=slice(None)):
    """Hairer's starting step for a 5th-order method; one extra function evaluation.

    The norms run over `y0[controlled]` only (see `error_size`).
    """
    y0, f0 = tuple(tf.stop_gradient(y) for y in y0), tuple(tf.stop_gradient(f) for f in f0)
    scale = [options.atol + options.rtol * tf.abs(y) for y in y0[controlled]]
    d0 = _rms_norm([y / s for y, s in zip(y0[controlled], scale, strict=True)])
    d1 = _rms_norm([f / s for f, s in zip(f0[controlled], scale, strict=True)])
    small = tf.logical_or(d0 < 1e-5, d1 < 1e-5)
    h0 = tf.where(small, tf.constant(1e-6, t0.dtype), 0.01 * d0 / tf.maximum(d1, 1e-30))
    y1 = tuple(y + direction * h0 * f for y, f in zip(y0, f0, strict=True))
    f1 = fn(t0 + direction * h0, y1)
    d2 = _rms_norm([(a - b) / s for a, b, s in zip(f1[controlled], f0[controlled], scale,
                                                   strict=True)]) / h0
    dmax = tf.maximum(d1, d2)
    h1 = tf.where(dmax <= 1e-15, tf.maximum(tf.constant(1e-6, t0.dtype), h0 * 1e-3),
                  (0.01 / tf.maximum(dmax, 1e-30)) ** 0.2)
    return tf.stop_gradient(tf.minimum(100.0 * h0, h1))


def _dopri5(fn, y0, t0, t1, options, first_step=None, error_size=None):
    """Returns `(y1, stats, h)`: `h` the step size proposed for a next step."""
    direction = tf.sign(t1 - t0)
    controlled = slice(0, error_size)
    f0 = fn(t0, y0)
    if first_step is None:
        h = _initial_step(fn, t0, y0, f0, direction, options, controlled)
        nfe = tf.constant(2)
    else:
        h = tf.stop_gradient(tf.cast(first_step, t0.dtype))
        nfe = tf.constant(1)

    def cond(t, h, y, k1, nfe, steps):
        return direction * (t1 - t) > 0

    def body(t, h, y, k1, nfe, steps):
        remaining = direction * (t1 - t)
        last = h >= remaining
        dt = direction * tf.minimum(h, remaining)
        ks = [k1]
        for i in range(1, 6):
            ks.append(fn(t + _C[i] * dt, _axpy(y, dt, ks, _A[i])))
        y_new = _axpy(y, dt, ks, _B5[:6])
        k7 = fn(t + dt, y_new)  # first-same-as-last: the next step's k1
        ks.append(k7)
        err = _axpy(tuple(tf.zeros_like(v) for v in y), dt, ks, _E)
        scaled = [tf.stop_gradient(e / (options.atol + options.rtol * tf.maximum(
            tf.abs(a), tf.abs(b)))) for e, a, b in zip(err[controlled], y[controlled],
                                                          y_new[controlled], strict=True)]
        err_norm = _rms_norm(scaled)
        accept = err_norm <= 1.0
        factor = tf.clip_by_value(0.9 * tf.maximum(err_norm, 1e-10) ** -0.2, 0.2, 10.0)
        factor = tf.where(accept, factor, tf.minimum(factor, 1.0))
        t_next = tf.where(accept, tf.where(last, t1, t + dt), t)
        y_next = tuple(tf.where(accept, a, b) for a, b in zip(y_new, y, strict=True))
        k_next = tuple(tf.where(accept, a, b) for a, b in zip(k7, k1, strict=True))
        # The step actually taken times the factor (the last step may have been cut short).
        return t_next, tf.abs(dt) * factor, y_next, k_next, nfe + 6, steps + 1

    t, h, y1, _, nfe, steps = tf.while_loop(
        cond, body, (t0, h, y0, f0, nfe, tf.constant(0)),
        maximum_iterations=options.max_num_steps)
    return y1, SolveStats(nfe, steps, tf.equal(t, t1)), h


def solve(fn, y0, t0, t1, options, first_step=None, error_size=None):
    """`odeint` without validation, also returning the next proposed step size.

    Returns `(y1, stats, h)`. `first_step` and `error_size` (see the module
    docstring) apply to `dopri5`; fixed-step solvers ignore them and return
    their step size as `h`.
    """
    y0 = tuple(y0)
    if options.solver == "dopri5":
        return _dopri5(fn, y0, t0, t1, options, first_step, error_size)
    y1, stats = _fixed(fn, y0, t0, t1, options)
    return y1, stats, tf.abs(t1 - t0) / options.num_steps


def odeint(fn, y0, t0, t1, options, validate_args=False, error_size=None):
    """Integrates `dy/dt = fn(t, y)` from `t0` to `t1`.

    Args:
      fn: callable `(t, y) -> dy/dt`, `y` and the result tuples of tensors of
        matching shapes and dtypes.
      y0: tuple of tensors, the state at `t0`.
      t0, t1: scalar tensors of the state's dtype; `t1 < t0` integrates backwards.
      options: `SolverOptions`.
      validate_args: if True, fail (`InvalidArgumentError`) when an adaptive
        solve runs out of `max_num_steps` before reaching `t1`.
      error_size: `dopri5` controls the error of the first `error_size`
        tensors of `y` only (default: all); the others are integrated along.

    Returns:
      `(y1, SolveStats(nfe, num_steps, success))`, `y1` a tuple like `y0`.
    """
    y1, stats, _ = solve(fn, y0, t0, t1, options, error_size=error_size)
    return check_success(y1, stats, validate_args), stats


def check_success(y1, stats, validate_args):
    """`y1`, made to fail when `validate_args` and the solve did not reach its end time."""
    if not validate_args:
        return tuple(y1)
    with tf.control_dependencies([tf.debugging.assert_equal(
            stats.success, True,
            message="dopri5 did not reach t1 within `max_num_steps`; raise it or "
                    "loosen rtol/atol.")]):
        return tuple(tf.identity(y) for y in y1)
