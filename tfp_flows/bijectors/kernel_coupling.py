"""Kernelised affine coupling with inducing points (Ferumal flows, English et al., 2024)."""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.bijectors.base import KerasBijector
from tfp_flows.internal import validation
from tfp_flows.internal.math import soft_clamp
from tfp_flows.nets.kernels import InducingPoints, KernelMachine, canonical_kernel
from tfp_flows.nets.mlp import concat_condition

tfb = tfp.bijectors


class KernelCoupling(KerasBijector):
    """Affine coupling whose scale and shift are kernel machines over inducing points.

    Split `x in R^D` into `u1 = x[..., :d]` (`d = D // 2`) and `u2 = x[..., d:]`.
    With `h = concat(u1, c)` (`c` the optional `conditional_input`),
    `k = [k(w_1, h), ..., k(w_N, h)]` over N inducing points `W` and

        s(u1) = bound * tanh((A_s k) / bound)      (soft-clamped log-scale)
        t(u1) = A_t k

    Forward (sampling direction): `y1 = u1`, `y2 = u2 * exp(s) + t`.
    Inverse (density direction):  `u1 = y1`, `u2 = (y2 - t) * exp(-s)`.
    `log|det J_forward| = sum(s)`; `ildj = -sum(s)` (`s` depends only on
    `u1 = y1`, so it is computed from either side). The log-density of a flow
    built from it is exact.

    `A_s`, `A_t` start at zero, so the layer starts as the identity. Kernels:
    squared exponential (the paper's only one), Matern 3/2 and 5/2; the
    length scale is `exp(log l)` (positive), learnable or fixed, and set by
    the median heuristic in `initialize_from_data` unless given. The
    soft clamp (`log_scale_bound`, default 3) keeps `exp(s)` bounded: the
    paper's unbounded `exp(s)` can overflow in training.

    Inducing points: by default each coupling has its own `InducingPoints`
    layer; pass one `inducing_points=` layer to several couplings to share it
    (the paper's low-data setting); `trainable_inducing_points=False` freezes
    them (with N = n, the representer form of the paper's section 3.1,
    evaluated at the data as it arrived at initialisation). Permute the input
    before this layer (the coupling itself always splits at `d`).

    #### Examples

    ```python
    tfd = tfp.distributions
    coupling = tfp_flows.bijectors.KernelCoupling(event_size=2, num_inducing=20)
    flow = tfd.TransformedDistribution(
        tfd.MultivariateNormalDiag(tf.zeros(2)),
        tfb.Chain([tfp_flows.bijectors.ActNorm(2), coupling]))
    tfp_flows.bijectors.initialize_from_data(flow, x_batch)  # points, length scale
    flow.log_prob(x_batch)

    # Shared inducing points (one weight, counted once):
    points = tfp_flows.nets.InducingPoints(num_points=20, point_size=1)
    c1 = tfp_flows.bijectors.KernelCoupling(2, 20, inducing_points=points)
    c2 = tfp_flows.bijectors.KernelCoupling(2, 20, inducing_points=points)
    ```

    #### References

    [1] English, Kirchler, Lippert. Kernelised Normalising Flows (Ferumal flows).

    Args:
      event_size: D >= 2, or 1 with `conditional_size > 0` (then `d = 0`: the
        scale and shift of the one coordinate are functions of `c` alone).
      num_inducing: N, the number of inducing points.
      kernel: 'squared_exponential' ('se'), 'matern32' or 'matern52'.
      inducing_points: an `InducingPoints` layer of shape `[N, d + conditional_size]`
        to share, or None to create one.
      trainable_inducing_points: whether a created points layer is trained.
      length_scale: fixed initial length scale, or None for the median heuristic.
      learn_length_scale: whether the length scale is trained.
      log_scale_bound: soft-clamp bound of `s` (positive), or None for none.
      conditional_size: size of `conditional_input` (0 for none).
      seed: int seed of the points' initial values and of the data subset.
    """

    def __init__(self, event_size, num_inducing, kernel="squared_exponential",
                 inducing_points=None, trainable_inducing_points=True, length_scale=None,
                 learn_length_scale=True, log_scale_bound=3.0, conditional_size=0, seed=0,
                 dtype=tf.float32, validate_args=False, name="kernel_coupling"):
        parameters = dict(locals())
        event_size = validation.positive_int(event_size, "event_size")
        self._conditional_size = validation.positive_int(
            conditional_size, "conditional_size", allow_zero=True)
        if event_size < 2 and not self._conditional_size:
            raise ValueError(f"`event_size` must be >= 2 for a coupling; got {event_size} (1 "
                             "needs a condition: `conditional_size` > 0).")
        self._num_inducing = validation.positive_int(num_inducing, "num_inducing")
        self._kernel = canonical_kernel(kernel)
        self._bound = (None if log_scale_bound is None
                       else validation.positive_float(log_scale_bound, "log_scale_bound"))
        seed = validation.positive_int(seed, "seed", allow_zero=True)
        dtype = validation.float_dtype(dtype)
        self._d = event_size // 2
        point_size = self._d + self._conditional_size
        if inducing_points is None:
            inducing_points = InducingPoints(self._num_inducing, point_size, seed=seed,
                                             trainable=bool(trainable_inducing_points),
                                             dtype=dtype.name)
        elif not isinstance(inducing_points, InducingPoints):
            raise TypeError("`inducing_points` must be a tfp_flows.nets.InducingPoints layer "
                            f"or None; got {type(inducing_points).__name__}.")
        expected = (self._num_inducing, point_size)
        given = (inducing_points.num_points, inducing_points.point_size)
        if given != expected:
            raise ValueError(f"`inducing_points` must have shape [num_inducing, d + "
                             f"conditional_size] = {list(expected)}; got {list(given)}.")
        self._points = inducing_points

        def make_layers(scope):
            self._machine = KernelMachine(
                self._num_inducing, event_size - self._d, self._kernel,
                length_scale=length_scale, learn_length_scale=learn_length_scale,
                dtype=dtype.name)
            return {"inducing_points": self._points, "machine": self._machine}

        super().__init__(parameters, make_layers, event_size, dtype,
                         validate_args=validate_args, name=name,
                         conditional_size=self._conditional_size)

    @property
    def num_inducing(self):
        """N, the number of inducing points `W`."""
        return self._num_inducing

    @property
    def kernel(self):
        """The kernel's canonical name (e.g. "squared_exponential")."""
        return self._kernel

    @property
    def inducing_points(self):
        """The `InducingPoints` layer (possibly shared with other couplings)."""
        return self._points

    @property
    def kernel_machine(self):
        """The `KernelMachine` layer (coefficients `a_s`, `a_t` and the length scale)."""
        return self._machine

    def _kernel_input(self, u1, conditional_input):
        if self._conditional_size and conditional_input is None:
            raise ValueError(f"{type(self).__name__} was built with conditional_size="
                             f"{self._conditional_size}; `conditional_input` is required.")
        if not self._conditional_size and conditional_input is not None:
            raise ValueError(f"{type(self).__name__} was built with conditional_size=0; "
                             "got a `conditional_input`.")
        return concat_condition(u1, conditional_input)

    def _split(self, x):
        x = validation.check_event_size(x, self._event_size, type(self).__name__,
                                        self.validate_args)
        x = validation.assert_finite(x, "x", self.validate_args)
        return x[..., :self._d], x[..., self._d:]

    def _log_scale_shift(self, u1, conditional_input):
        h = self._kernel_input(u1, conditional_input)
        log_scale, shift = self._machine(h, self._points.variable())
        # Broadcast against a conditional input with a larger batch shape.
        return soft_clamp(log_scale, self._bound), shift

    def _forward(self, x, conditional_input=None):
        u1, u2 = self._split(x)
        s, t = self._log_scale_shift(u1, conditional_input)
        y2 = u2 * tf.exp(s) + t
        u1 = tf.broadcast_to(u1, tf.concat([tf.shape(y2)[:-1], [self._d]], 0))
        return tf.concat([u1, y2], axis=-1)

    def _inverse(self, y, conditional_input=None):
        y1, y2 = self._split(y)
        s, t = self._log_scale_shift(y1, conditional_input)
        u2 = (y2 - t) * tf.exp(-s)
        y1 = tf.broadcast_to(y1, tf.concat([tf.shape(u2)[:-1], [self._d]], 0))
        return tf.concat([y1, u2], axis=-1)

    def _forward_log_det_jacobian(self, x, conditional_input=None):
        u1, _ = self._split(x)
        s, _ = self._log_scale_shift(u1, conditional_input)
        return tf.reduce_sum(s, axis=-1)

    def _inverse_log_det_jacobian(self, y, conditional_input=None):
        return -self._forward_log_det_jacobian(y, conditional_input)

    def initialize_from_data(self, y, conditional_input=None):
        """Data-dependent initialisation from `y` (density-direction input), once.

        Sets the inducing points to a random subset of `concat(y1, c)` (skipped
        if a shared points layer was already initialised by another coupling)
        and then the median-heuristic length scale between that data and the
        points. Runs eagerly; recorded in non-trainable weights, so a restored
        model is not re-initialised.
        """
        y = tf.convert_to_tensor(y, self.dtype)
        y1 = y[..., :self._d]
        if self._conditional_size and conditional_input is None:
            raise ValueError(f"{type(self).__name__}.initialize_from_data needs "
                             "`conditional_input` (conditional_size="
                             f"{self._conditional_size}).")
        h = self._kernel_input(y1, conditional_input)
        h = np.asarray(h).reshape(-1, self._d + self._conditional_size)
        self._points.assign_from_data(h)
        self._machine.set_length_scale(h, self._points.points.numpy())
