"""FFJORD: a continuous-time flow whose vector field is a Keras 3 layer.

Compiles under XLA, switches between the exact and the Hutchinson trace
(`with_trace`, sharing the weights), offers backprop or adjoint gradients and
the RNODE regularisers.
"""

import collections

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.bijectors.base import KerasBijector
from tfp_flows.internal import contract, tfp_compat, validation
from tfp_flows.ode import adjoint, solvers
from tfp_flows.ode import trace as trace_lib

tfb = tfp.bijectors

GRADIENTS = ("backprop", "adjoint")

FFJORDSolution = collections.namedtuple(
    "FFJORDSolution",
    ["state", "log_det", "kinetic", "jacobian_frobenius", "nfe", "num_steps", "success"])
FFJORDSolution.__doc__ = """Result of `FFJORD.solve`.

Attributes:
  state: the output of the solve, `[..., D]`.
  log_det: `log|det d state / d input|`, batch shape (exact up to solver error
    with the exact trace; an unbiased estimate with Hutchinson).
  kinetic: `int ||f||^2 dt` per example (None unless `regularize=True`).
  jacobian_frobenius: `int ||df/dz||_F^2 dt` per example (None unless
    `regularize=True`; exact with the exact trace, else estimated from the
    same Hutchinson probes as the trace).
  nfe: number of vector-field evaluations (int32 scalar tensor).
  num_steps: attempted solver steps; success: whether the solve reached its end time.
"""


ADJOINT_OPTIONS = ("seminorm", "reuse_step")


def _check_adjoint_options(options):
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"`adjoint_options` must be a dict with keys among "
                        f"{list(ADJOINT_OPTIONS)}; got {options!r}.")
    unknown = sorted(set(options) - set(ADJOINT_OPTIONS))
    if unknown:
        raise ValueError(f"`adjoint_options` keys must be among {list(ADJOINT_OPTIONS)}; "
                         f"got {unknown}.")
    for key, value in options.items():
        if not isinstance(value, bool):
            raise TypeError(f"`adjoint_options[{key!r}]` must be a bool; got {value!r}.")
    return dict(options)


class FFJORD(KerasBijector):
    """Free-form continuous-time flow (Grathwohl et al., 2019).

    The bijection is the time-`t0 -> t1` flow map of `dz/dt = f(t, z[, c])`,
    with `f` a Keras 3 layer (`vector_field`, e.g. `tfp_flows.nets.ODENet`).

    Forward (sampling direction): `y = z(t1)` with `z(t0) = x`.
    Inverse (density direction): `x = z(t0)`, solving backwards from `z(t1) = y`.
    By the instantaneous change of variables,

        log|det J_forward(x)| = int_{t0}^{t1} tr(df/dz(t, z(t))) dt,

    integrated jointly with `z`, and `ildj(y) = -fldj(x)`. Hence
    `log p(y) = log p_base(x) + int_{t1}^{t0} tr(df/dz) dt`.

    Exactness: with `trace='exact'` the log-det is exact up to the ODE solver's
    error (`D` Jacobian-vector products per evaluation, for small `D`; a field
    may offer a cheaper `exact_trace(t, z, conditional_input=None)`, as `ODENet`
    with up to two hidden layers does, at the cost of one product for any `D`). With
    `trace='hutchinson'` it is an unbiased estimate (`num_probes` Rademacher or
    Gaussian probes, drawn once per solve from the stateless `seed` call kwarg
    and fixed through it). The trace is fixed at construction (it decides
    `log_prob_kind`, and TFP's `parameters` / `copy()` must agree with it);
    switch with `bijector.with_trace('exact')`, a new `FFJORD` sharing the same
    vector-field layer (for a whole flow `tfp_flows.flows.with_trace(dist,
    trace)`, for a Keras model `FlowModel.with_trace(trace)`), or per call with
    `trace=...`: e.g. train with Hutchinson and evaluate with the exact trace.

    Solvers (`tfp_flows.ode.solvers`): adaptive `'dopri5'` (`rtol`, `atol`,
    `max_num_steps`) or fixed-step `'rk4'`, `'midpoint'`, `'euler'`
    (`num_steps`). All are `tf.while_loop`s with static shapes, so training
    steps compile with `jit_compile=True`. Gradients: `'adjoint'` (default; a
    backward solve of the adjoint ODE; memory flat in the number of steps; the
    fast choice under XLA; gradients of the continuous problem, equal to
    backprop's up to solver error) or `'backprop'` through the solver (memory
    grows with the number of steps; under XLA with `'dopri5'` its buffers are
    sized by `max_num_steps`, which is slow: prefer it with fixed-step solvers).

    The trace uses forward-mode Jacobian-vector products when `vector_field`
    has a `jvp(t, z, tangents, conditional_input=None)` method returning
    `(f, J @ tangents)` (`ODENet` does), else reverse-mode products.

    `sample_and_log_prob` and `forward` + `forward_log_det_jacobian` on the same
    tensor cost one solve: `_forward` stores the log-det in TFP's cache.
    `solve(...)` returns the state, log-det, number of function evaluations and
    (with `regularize=True`) the RNODE integrals: kinetic energy `int ||f||^2 dt`
    and Jacobian Frobenius norm `int ||df/dz||_F^2 dt` (Finlay et al., 2020),
    which `tfp_flows.keras.RNODE` adds to the training loss.

    Args:
      vector_field: built Keras 3 layer, `call(t, z, conditional_input=None)`.
      event_size: `D`; default `vector_field.event_size`.
      t0, t1: integration interval, `t1 > t0`.
      solver: 'dopri5', 'rk4', 'midpoint' or 'euler'.
      rtol, atol, max_num_steps: adaptive solver settings (positive).
      num_steps: steps of the fixed-step solvers (positive).
      trace: 'exact' or 'hutchinson'.
      num_probes: Hutchinson probes per solve; probe: 'rademacher' or 'gaussian'.
      gradient: 'adjoint' or 'backprop'.
      adjoint_options: dict of `tfp_flows.ode.odeint_adjoint`
        switches for the backward solve, `{'seminorm': bool, 'reuse_step': bool}`
        (default both True: fewer evaluations; set them False for the plain
        adjoint of Chen et al., e.g. to check gradients).
      control_log_det: whether the adaptive solver controls the log-det's error
        besides `z`'s. Default None: with the exact trace yes (it is reported as
        exact up to solver error), with Hutchinson no (an estimate whose
        sampling noise is orders of magnitude above any tolerance; the log-det
        is integrated along `z`'s steps). The RNODE integrals are never
        controlled. The adjoint gradient never reads the forward solve's
        log-det (only its end state `z`).
      validate_args: check inputs are finite and that adaptive solves finish.
      name: bijector name (unique within a chain).

    #### Examples

    ```python
    net = tfp_flows.nets.ODENet(event_size=2, hidden_units=(64, 64))
    ffjord = tfp_flows.bijectors.FFJORD(net, trace="hutchinson", solver="dopri5")
    flow = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(2)), ffjord)
    lp = flow.log_prob(x, bijector_kwargs={"seed": (1, 2)})   # unbiased estimate
    exact = tfp_flows.flows.with_trace(flow, "exact")          # same weights, exact
    lp_exact = exact.log_prob(x)
    ```

    #### References

    [1]: Will Grathwohl, Ricky T. Q. Chen, Jesse Bettencourt, Ilya Sutskever,
         David Duvenaud. FFJORD: Free-form Continuous Dynamics for Scalable
         Reversible Generative Models. ICLR 2019.
    [2]: Chris Finlay, Joern-Henrik Jacobsen, Levon Nurbekyan, Adam Oberman.
         How to train your neural ODE: the world of Jacobian and kinetic
         regularization. ICML 2020.
    """

    def __init__(self, vector_field, event_size=None, t0=0.0, t1=1.0, solver="dopri5",
                 rtol=1e-5, atol=1e-5, num_steps=8, max_num_steps=1000, trace="exact",
                 num_probes=1, probe="rademacher", gradient="adjoint", adjoint_options=None,
                 control_log_det=None, validate_args=False, name="ffjord"):
        parameters = dict(locals())
        if not isinstance(vector_field, keras.layers.Layer):
            raise TypeError("`vector_field` must be a Keras 3 layer; "
                            f"got {type(vector_field).__name__}.")
        if event_size is None:
            event_size = getattr(vector_field, "event_size", None)
            if event_size is None:
                raise ValueError("`event_size` must be given when `vector_field` has no "
                                 "`event_size` attribute; got None.")
        event_size = validation.positive_int(event_size, "event_size")
        for value, arg in ((t0, "t0"), (t1, "t1")):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"`{arg}` must be a Python number; got {value!r}.")
        if not t1 > t0:
            raise ValueError(f"`t1` must be greater than `t0`; got t0={t0}, t1={t1}.")
        self._t0, self._t1 = float(t0), float(t1)
        self._options = solvers.SolverOptions.make(solver, num_steps, rtol, atol, max_num_steps)
        self._trace = trace_lib.check_trace(trace)
        self._num_probes = validation.positive_int(num_probes, "num_probes")
        self._probe = trace_lib.check_probe(probe)
        self._gradient = validation.one_of(gradient, "gradient", GRADIENTS)
        self._adjoint_options = _check_adjoint_options(adjoint_options)
        if control_log_det is not None and not isinstance(control_log_det, bool):
            raise TypeError("`control_log_det` must be None (control it with the exact "
                            f"trace only) or a bool; got {control_log_det!r}.")
        self._control_log_det = control_log_det
        dtype = validation.float_dtype(vector_field.dtype, "vector_field.dtype")
        if not vector_field.built:
            raise ValueError(f"`vector_field` {vector_field.name!r} must be built "
                             "(call `layer.build(...)` first).")
        self._vector_field = vector_field
        super().__init__(parameters, {"vector_field": vector_field}, event_size, dtype,
                         validate_args=validate_args, name=name,
                         conditional_size=getattr(vector_field, "conditional_size", 0),
                         takes_seed=True)

    # -- Settings --------------------------------------------------------------

    @property
    def vector_field(self):
        """The vector field `f(t, z [, c])` (e.g. an `ODENet`)."""
        return self._vector_field

    @property
    def solver_options(self):
        """`solvers.SolverOptions(solver, num_steps, rtol, atol, max_num_steps)`."""
        return self._options

    @property
    def gradient(self):
        """How gradients flow through the solve: "adjoint" or "backprop"."""
        return self._gradient

    @property
    def log_prob_kind(self):
        """`"exact"` with the exact trace (up to solver error), else `"unbiased estimate"`."""
        return contract.EXACT if self._trace == "exact" else contract.UNBIASED

    @property
    def trace(self):
        """'exact' or 'hutchinson', fixed at construction (switch with `with_trace`)."""
        return self._trace

    @trace.setter
    def trace(self, value):
        raise AttributeError(
            "`FFJORD.trace` is fixed at construction; use `bijector.with_trace(trace)` (a new "
            "FFJORD sharing the same vector field), `tfp_flows.flows.with_trace(distribution, "
            f"trace)` or `FlowModel.with_trace(trace)`; got an assignment of {value!r}.")

    def with_trace(self, trace):
        """A new `FFJORD` with `trace` ('exact' or 'hutchinson') sharing this vector field.

        Every other setting (solver, tolerances, probes, gradient, name) is
        kept, so the copy replaces this block in a chain; the weights are the
        same Keras layer, so training either trains both. `parameters` and
        `copy()` of the result report the new trace.
        """
        return self.copy(trace=trace_lib.check_trace(trace))

    # -- Solving ----------------------------------------------------------------

    def solve(self, x, direction="inverse", conditional_input=None, seed=None, trace=None,
              regularize=False):
        """Integrates the augmented ODE once; returns an `FFJORDSolution`.

        Args:
          x: `[..., D]` input of the `direction` ('forward': sampling, from t0 to
            t1; 'inverse': density, from t1 to t0).
          conditional_input: `[..., C]` or None.
          seed: stateless seed of the Hutchinson probes (None: random).
          trace: overrides `self.trace` for this call.
          regularize: also integrate the RNODE kinetic and Frobenius terms.
        """
        validation.one_of(direction, "direction", ("forward", "inverse"))
        trace = self._trace if trace is None else trace_lib.check_trace(trace)
        x = self._as_input(x, "x")
        x = validation.check_event_size(x, self._event_size, "FFJORD", self.validate_args)
        x = validation.assert_finite(x, "x", self.validate_args)
        inputs = ()
        if conditional_input is not None:
            c = self._as_input(conditional_input, "conditional_input")
            batch = tf.broadcast_dynamic_shape(tf.shape(x)[:-1], tf.shape(c)[:-1])
            x = tf.broadcast_to(x, tf.concat([batch, [self._event_size]], 0))
            inputs = (tf.broadcast_to(c, tf.concat([batch, tf.shape(c)[-1:]], 0)),)
        probes, weight = trace_lib.make_probes(x, trace, self._num_probes, self._probe, seed)
        fn = trace_lib.augmented_dynamics(self._vector_field, probes, weight, regularize,
                                         exact=trace == "exact")
        zeros = tf.zeros(tf.shape(x)[:-1], self.dtype)
        y0 = (x, zeros, zeros, zeros) if regularize else (x, zeros)
        t0, t1 = tf.constant(self._t0, self.dtype), tf.constant(self._t1, self.dtype)
        start, end = (t0, t1) if direction == "forward" else (t1, t0)
        # The solver controls the error of z, and of the log-det when it is exact; a
        # Hutchinson log-det (an estimate whose sampling noise dwarfs any tolerance) and
        # the RNODE penalties are integrated along the same steps without forcing them.
        control = trace == "exact" if self._control_log_det is None else self._control_log_det
        error_size = 2 if control else 1
        if self._gradient == "adjoint":
            # Only z feeds back into the dynamics; the log-det (and RNODE) integrals are
            # passive, so the backward solve tracks z and its adjoint alone.
            y1, stats = adjoint.odeint_adjoint(fn, y0, inputs, start, end, self._options,
                                               self.validate_args, num_active=1,
                                               error_size=error_size, **self._adjoint_options)
        else:
            y1, stats = solvers.odeint(lambda t, y: fn(t, y, inputs), y0, start, end,
                                   self._options, self.validate_args, error_size)
        # Integrated backwards, the regularisers' integrals come out negative.
        sign = 1.0 if direction == "forward" else -1.0
        kinetic = sign * y1[2] if regularize else None
        frobenius = sign * y1[3] if regularize else None
        return FFJORDSolution(y1[0], y1[1], kinetic, frobenius, *stats)

    # TFP converts inputs to the bijector's dtype before `_forward` / `_inverse`, with a
    # generic error for another float dtype: check first, naming both dtypes.
    def forward(self, x, name="forward", **kwargs):
        self._check_dtype(x, "x")
        return super().forward(x, name=name, **kwargs)

    def inverse(self, y, name="inverse", **kwargs):
        self._check_dtype(y, "y")
        return super().inverse(y, name=name, **kwargs)

    def forward_log_det_jacobian(self, x, event_ndims=None, name="forward_log_det_jacobian",
                                 **kwargs):
        self._check_dtype(x, "x")
        return super().forward_log_det_jacobian(x, event_ndims=event_ndims, name=name,
                                                **kwargs)

    def inverse_log_det_jacobian(self, y, event_ndims=None, name="inverse_log_det_jacobian",
                                 **kwargs):
        self._check_dtype(y, "y")
        return super().inverse_log_det_jacobian(y, event_ndims=event_ndims, name=name,
                                                **kwargs)

    def _check_dtype(self, value, name):
        if tf.is_tensor(value) and value.dtype.is_floating and value.dtype != self.dtype:
            raise TypeError(
                f"FFJORD: `{name}` has dtype {value.dtype.name} but the vector field "
                f"{self._vector_field.name!r} computes in {self.dtype.name}; build the field "
                f"with `dtype='{value.dtype.name}'` (e.g. `ODENet(..., "
                f"dtype='{value.dtype.name}')`, or `tfp_flows.flows.ffjord(..., "
                f"dtype='{value.dtype.name}')`) or cast the input.")

    def _as_input(self, value, name):
        """`value` as a tensor of the field's dtype; a clear error for another float dtype."""
        self._check_dtype(value, name)
        if tf.is_tensor(value) and not value.dtype.is_floating:
            return tf.cast(value, self.dtype)
        return tf.convert_to_tensor(value, self.dtype)

    # -- TFP hooks --------------------------------------------------------------

    def _forward(self, x, **kwargs):
        solution = self.solve(x, "forward", **kwargs)
        # One solve for sample_and_log_prob: hand the log-det to TFP's cache.
        tfp_compat.bijector_cache(self).forward_attributes(x, **kwargs)["ildj"] = -solution.log_det
        return solution.state

    def _inverse(self, y, **kwargs):
        solution = self.solve(y, "inverse", **kwargs)
        tfp_compat.bijector_cache(self).inverse_attributes(y, **kwargs)["ildj"] = solution.log_det
        return solution.state

    def _forward_log_det_jacobian(self, x, **kwargs):
        return self.solve(x, "forward", **kwargs).log_det

    def _inverse_log_det_jacobian(self, y, **kwargs):
        return self.solve(y, "inverse", **kwargs).log_det
