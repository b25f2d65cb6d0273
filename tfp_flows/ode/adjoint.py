"""Adjoint-method gradients of an ODE solve: memory flat in the number of steps.

For `dy/dt = f(t, y, c; theta)` solved from `t_a` to `t_b`, with loss `L(y(t_b))`,
the adjoint `a(t) = dL/dy(t)` obeys

    da/dt = -a^T df/dy,        a(t_b) = dL/dy(t_b),
    dL/dtheta = int_{t_a}^{t_b} a^T df/dtheta dt,   (likewise for inputs c)

(Pontryagin; Chen et al., 2018). The gradient solves the augmented system
`(y, a, a_c, a_theta)` backwards from `t_b` to `t_a`, recomputing `y` on the
way instead of storing the forward trajectory, so memory does not grow with
the number of solver steps. The price: one more solve, and gradients of the
continuous problem (equal to backprop's gradients of the discrete solve only up
to the solver's error in both directions).

Three things keep the backward `dopri5` solve short:

* passive integrals (`num_active`): parts of `y` that `fn` never reads (e.g.
  FFJORD's log-determinant, whose error drove the backward step size before)
  have constant adjoints, so the backward solve neither carries nor
  error-controls them; it needs the trajectory of the active state only;
* seminorm (`seminorm=True`, Kidger et al., 2021): the step-size control
  looks at `(y, a)` only. `a_c` and `a_theta` are integrals along the
  trajectory that never feed back into it; controlling their error as well
  only forces smaller steps;
* warm start (`reuse_step=True`): the backward solve starts from the step size
  the forward solve proposed at its end, where the backward solve begins,
  instead of Hairer's rule, which costs an extra evaluation of the augmented
  system and starts small. A first step that is too large is rejected and
  shrunk by the usual error control.

On the speed benchmark's two moons net (batch 512, 64x64 tanh, DOPRI5 1e-5,
`benchmarks/ffjord_speed.py`) the three cut the backward solve from 20 to 7
evaluations of the augmented system at initialisation, and after 300 training
steps from 61 to 37 (the forward solve: 50).

#### References

[1]: Ricky T. Q. Chen, Yulia Rubanova, Jesse Bettencourt, David Duvenaud.
     Neural Ordinary Differential Equations. NeurIPS 2018.
[2]: Patrick Kidger, Ricky T. Q. Chen, Terry Lyons. "Hey, that's not an ODE":
     Faster ODE Adjoints via Seminorms. ICML 2021.
"""

import tensorflow as tf

from tfp_flows.internal import validation
from tfp_flows.ode import solvers


def odeint_adjoint(fn, y0, inputs, t0, t1, options, validate_args=False, num_active=None,
                   seminorm=True, reuse_step=True, error_size=None):
    """`solvers.odeint` whose gradient comes from the backward adjoint solve.

    Args:
      fn: callable `(t, y, inputs) -> dy/dt`; `y`, `dy/dt` tuples of tensors,
        `inputs` a tuple of tensors `fn` may be differentiated with respect to
        (e.g. a conditional input). Trainable variables read by `fn` receive
        gradients too.
      y0: tuple of tensors, the state at `t0`.
      inputs: tuple of float tensors (may be empty).
      t0, t1, options, validate_args: as in `solvers.odeint`.
      num_active: the number of leading tensors of `y` that `fn` reads (default:
        all). The others are *passive* integrals along the trajectory (such as
        FFJORD's log-determinant): `fn`'s output must not depend on their
        values. Their adjoints are constant, so the backward solve neither
        carries nor error-controls them.
      seminorm: control the backward solve's error on `(y, a)` only.
      reuse_step: start the backward solve from the forward solve's last
        proposed step size.
      error_size: as in `solvers.odeint`, for the forward solve.

    Returns:
      `(y1, stats)` as `solvers.odeint`; the stats of the forward solve.
    """
    y0, inputs = tuple(y0), tuple(inputs)
    num_y = len(y0)
    num_active = validation.positive_int(num_y if num_active is None else num_active,
                                         "num_active")
    if num_active > num_y:
        raise ValueError(f"`num_active` must be at most the number of state tensors "
                         f"({num_y}); got {num_active}.")

    @tf.custom_gradient
    def solve(*flat):
        y_start, extra = flat[:num_y], flat[num_y:]
        y_end, stats, last_step = solvers.solve(lambda t, y: fn(t, y, extra), y_start, t0, t1,
                                            options, error_size=error_size)
        y_end = tuple(tf.identity(y) for y in solvers.check_success(y_end, stats, validate_args))

        def grad(*grad_ys, variables=None):
            variables = list(variables or [])
            grad_y = tuple(tf.zeros_like(y) if g is None else g
                           for g, y in zip(grad_ys[:num_y], y_end, strict=True))
            # Passive integrals: fn never reads them, so their adjoints stay constant and
            # the backward solve need not carry them (or control their error).
            passive_y, passive_a = y_end[num_active:], grad_y[num_active:]

            def augmented(t, state):
                y = state[:num_active]
                a = state[num_active:2 * num_active]
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(y)
                    tape.watch(extra)
                    tape.watch(variables)
                    dy = fn(t, (*y, *passive_y), extra)
                vjps = tape.gradient(dy, [*y, *extra, *variables],
                                     output_gradients=[*a, *passive_a],
                                     unconnected_gradients=tf.UnconnectedGradients.ZERO)
                # Dense: IndexedSlices (e.g. from gathers) cannot be loop variables.
                vjps = [tf.convert_to_tensor(v) for v in vjps]
                return (*dy[:num_active], *(-v for v in vjps))

            start = (*y_end[:num_active], *grad_y[:num_active],
                     *(tf.zeros_like(c) for c in extra), *(tf.zeros_like(v) for v in variables))
            end, stats_back, _ = solvers.solve(
                augmented, start, t1, t0, options,
                first_step=last_step if reuse_step else None,
                error_size=2 * num_active if seminorm else None)
            end = solvers.check_success(end, stats_back, validate_args)
            grad_start = (*end[num_active:2 * num_active], *passive_a)
            grad_extra = end[2 * num_active:2 * num_active + len(extra)]
            grad_vars = list(end[2 * num_active + len(extra):])
            return [*grad_start, *grad_extra], grad_vars

        return (*y_end, stats.nfe, stats.num_steps, stats.success), grad

    out = solve(*y0, *inputs)
    return tuple(out[:num_y]), solvers.SolveStats(*out[num_y:])
