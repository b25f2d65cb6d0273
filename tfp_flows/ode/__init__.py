"""ODE numerics for continuous-time flows: solvers, the adjoint gradient, trace estimators.

Not bijectors: `tfp_flows.bijectors.FFJORD` is built from these.

* `solvers`: fixed-step Euler / midpoint / RK4 and adaptive Dormand–Prince,
  written for XLA (`odeint`, `solve`, `SolverOptions`).
* `adjoint`: `odeint_adjoint`, gradients by the adjoint method with seminorm
  error control and passive integrals (memory flat in the number of steps).
* `trace`: exact and Hutchinson estimators of `tr(df/dz)` and the augmented
  dynamics of a continuous normalising flow.
"""

from tfp_flows.ode import adjoint, solvers, trace
from tfp_flows.ode.adjoint import odeint_adjoint
from tfp_flows.ode.solvers import SolverOptions, odeint, solve

__all__ = ["SolverOptions", "adjoint", "odeint", "odeint_adjoint", "solve", "solvers", "trace"]
