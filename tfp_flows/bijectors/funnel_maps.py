"""Conditional maps `F` for funnels: bijections of `x_plus` given `x_minus`.

A funnel (S. Klein, J. A. Raine, S. Pina-Otey, S. Voloshynovskiy and
T. Golling, "Funnels: Exact maximum likelihood with dimensionality
reduction", arXiv:2112.08069, 2021) keeps `x_plus` and drops `x_minus`; its
latent is `z = F^-1(x_plus; x_minus)`. Every class here is a `tfb.Bijector`
on `x_plus` that takes the dropped coordinates as `conditional_input=` (a
conditional funnel `p(x | c)` passes `concat([x_minus, c])`):

* forward (sampling direction): `x_plus = F(z; x_minus)`,
* inverse (density direction): `z = F^-1(x_plus; x_minus)`,
* `inverse_log_det_jacobian = log|det dz/dx_plus|`, the funnel's Jacobian term.

| class | `z = F^-1(x_plus; x_minus)` | `log|det dz/dx_plus|` |
|---|---|---|
| `ElementwiseAffine` | `(x_plus - t(x_minus)) * exp(-s(x_minus))` | `-sum s` |
| `ElementwiseSpline` | monotone RQ spline per dim, knots from `x_minus` | sum of log slopes |
| `FunnelLinear` | `R x_plus + W' x_minus + V c + b`, R in LU form | `num_tiles * log|det R|` |

`FunnelLinear` with `num_tiles > 1` is the convolutional funnel: an image cut
into non-overlapping tiles (kernel stride equal to its width), one element of
each tile kept, the same kernel `[R, W']` applied to every tile. For the 1-D
kernel `[a, b]` with stride 2 over `n` inputs this gives
`log|det| = (n/2) log|a|` (the Jacobian is block diagonal with `n/2` blocks
`a`); the paper's Eq. (7) writes `log((n/2)|a|)`, which is not the
log-determinant of the map.

With `conditional_size=0` the elementwise maps hold free parameters and are
plain bijections (the F-MLP's learnable spline activation).

The elementwise maps compute a map and its log-det in one pass (one MLP call;
for the spline one bin search) and leave the log-det in TFP's cache, so the
funnel's log-det call after its map does not run the MLP again
(`bijectors.one_pass`).
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.bijectors.base import KerasBijector, keras_layer_name
from tfp_flows.bijectors.lu_linear import lu_matrices, lu_parameters
from tfp_flows.bijectors.one_pass import remember_ildj
from tfp_flows.bijectors.spline import StableRationalQuadraticSpline, spline_parameters
from tfp_flows.internal import keras_owned, validation
from tfp_flows.internal.math import soft_clamp
from tfp_flows.nets.mlp import MLP, Parameters, dense

tfb = tfp.bijectors



class _Elementwise(KerasBijector):
    """Shared plumbing: per-dimension parameters from an MLP of `x_minus` or free weights."""

    _params_per_dim = None  # set by subclasses

    def __init__(self, event_size, conditional_size, hidden_units, activation, dtype,
                 validate_args, parameters, name):
        event_size = validation.positive_int(event_size, "event_size")
        self._conditional_size = validation.positive_int(
            conditional_size, "conditional_size", allow_zero=True)
        dtype = validation.float_dtype(dtype)

        def make_layers(scope):
            width = self._params_per_dim()
            if self._conditional_size:
                self._net = keras_owned.build_layer(
                    MLP(event_size * width, hidden_units, activation, dtype=dtype.name,
                        name=keras_layer_name(scope, "_net")),
                    (None, self._conditional_size))
            else:
                self._net = Parameters({"raw": ((event_size, width), "zeros")},
                                       dtype=dtype.name, name=keras_layer_name(scope, "_params"))
            return {"net": self._net}

        super().__init__(parameters, make_layers, event_size, dtype,
                         validate_args=validate_args, name=name,
                         conditional_size=self._conditional_size)

    def _raw(self, conditional_input):
        """Unconstrained parameters, shape `[..., event_size, params_per_dim]`."""
        if not self._conditional_size:
            return self._net.variable("raw")
        if conditional_input is None:
            raise ValueError(f"{type(self).__name__} is conditional: pass "
                             f"`conditional_input` of shape [..., {self._conditional_size}].")
        c = tf.convert_to_tensor(conditional_input, self.dtype)
        out = self._net(c)
        return tf.reshape(out, tf.concat([tf.shape(out)[:-1], [self._event_size, -1]], 0))

    def _batch_ldj(self, per_dim, x):
        """Sums `per_dim` over the event and broadcasts to the batch shape of `x`."""
        total = tf.reduce_sum(per_dim, axis=-1)
        return tf.broadcast_to(total, tf.broadcast_dynamic_shape(tf.shape(x)[:-1],
                                                                 tf.shape(total)))


class ElementwiseAffine(_Elementwise):
    """`x_plus = z * exp(s) + t`, with `(t, s) = MLP(x_minus)` (or free weights).

    The log-scale is soft-clamped to `[-log_scale_bound, log_scale_bound]`
    (`c tanh(s / c)`), so `exp(s)` cannot overflow in training. A zero MLP
    output (its initial state) is the identity.
    `log|det dx_plus/dz| = sum_i s_i`; the funnel uses the inverse, `-sum_i s_i`.

    #### Examples

    ```python
    f = ElementwiseAffine(event_size=3, conditional_size=1)
    z = f.inverse(x_plus, conditional_input=x_minus)
    ldj = f.inverse_log_det_jacobian(x_plus, event_ndims=1, conditional_input=x_minus)
    ```
    """

    def __init__(self, event_size, conditional_size=0, hidden_units=(64, 64),
                 activation="relu", log_scale_bound=3.0, dtype=tf.float32,
                 validate_args=False, name="elementwise_affine"):
        parameters = dict(locals())
        self._bound = log_scale_bound
        super().__init__(event_size, conditional_size, hidden_units, activation, dtype,
                         validate_args, parameters, name)

    @staticmethod
    def _params_per_dim():
        return 2

    def _shift_log_scale(self, conditional_input):
        raw = self._raw(conditional_input)
        return raw[..., 0], soft_clamp(raw[..., 1], self._bound)

    def _forward(self, z, conditional_input=None):
        shift, log_scale = self._shift_log_scale(conditional_input)
        # The log-det of the edge goes to TFP's cache: no second MLP pass for it.
        remember_ildj(self, "forward", z, -self._batch_ldj(log_scale, z),
                      conditional_input=conditional_input)
        return z * tf.exp(log_scale) + shift

    def _inverse(self, x, conditional_input=None):
        shift, log_scale = self._shift_log_scale(conditional_input)
        remember_ildj(self, "inverse", x, -self._batch_ldj(log_scale, x),
                      conditional_input=conditional_input)
        return (x - shift) * tf.exp(-log_scale)

    def _forward_log_det_jacobian(self, z, conditional_input=None):
        _, log_scale = self._shift_log_scale(conditional_input)
        return self._batch_ldj(log_scale, z)

    def _inverse_log_det_jacobian(self, x, conditional_input=None):
        return -self._forward_log_det_jacobian(x, conditional_input)


class ElementwiseSpline(_Elementwise):
    """Monotone rational-quadratic spline per dimension (knots: `spline_parameters`).

    On `[-bound, bound]` the map is a spline with `num_bins` bins whose widths,
    heights and interior slopes come from `MLP(x_minus)` (a coupling layer whose
    conditioner sees only the dropped coordinates) or, with
    `conditional_size=0`, from free weights (the F-MLP activation). Outside the
    interval it is the identity. Zero parameters give the identity.
    Log-det: TFP's closed-form spline derivative, summed over dimensions.

    #### Examples

    ```python
    f = ElementwiseSpline(event_size=6, conditional_size=2, num_bins=8, bound=4.0)
    z = f.inverse(x_plus, conditional_input=x_minus)          # density direction
    x_plus = f.forward(z, conditional_input=x_minus)          # sampling direction
    act = ElementwiseSpline(event_size=6)                     # unconditional activation
    ```
    """

    def __init__(self, event_size, conditional_size=0, num_bins=8, bound=4.0,
                 hidden_units=(64, 64), activation="relu", dtype=tf.float32,
                 validate_args=False, name="elementwise_spline"):
        parameters = dict(locals())
        self._num_bins = validation.positive_int(num_bins, "num_bins")
        self._bound = validation.positive_float(bound, "bound")
        super().__init__(event_size, conditional_size, hidden_units, activation, dtype,
                         validate_args, parameters, name)

    def _params_per_dim(self):
        return 3 * self._num_bins - 1

    def _spline(self, conditional_input):
        widths, heights, slopes = spline_parameters(self._raw(conditional_input),
                                                    self._num_bins, self._bound)
        return StableRationalQuadraticSpline(widths, heights, slopes, range_min=-self._bound)

    def _forward(self, z, conditional_input=None):
        # Map and log-det from one MLP pass and one bin search; the log-det goes to
        # TFP's cache, where the log-det call that follows finds it.
        x, fldj = self._spline(conditional_input).forward_and_log_det(z)
        remember_ildj(self, "forward", z, -self._batch_ldj(fldj, z),
                      conditional_input=conditional_input)
        return x

    def _inverse(self, x, conditional_input=None):
        z, ildj = self._spline(conditional_input).inverse_and_log_det(x)
        remember_ildj(self, "inverse", x, self._batch_ldj(ildj, x),
                      conditional_input=conditional_input)
        return z

    def _forward_log_det_jacobian(self, z, conditional_input=None):
        ldj = self._spline(conditional_input).forward_log_det_jacobian(z, event_ndims=1)
        return tf.broadcast_to(ldj, tf.broadcast_dynamic_shape(tf.shape(z)[:-1], tf.shape(ldj)))

    def _inverse_log_det_jacobian(self, x, conditional_input=None):
        ldj = self._spline(conditional_input).inverse_log_det_jacobian(x, event_ndims=1)
        return tf.broadcast_to(ldj, tf.broadcast_dynamic_shape(tf.shape(x)[:-1], tf.shape(ldj)))


class FunnelLinear(KerasBijector):
    """The F-MLP / convolutional funnel map: `z_t = R x_plus_t + W' x_minus_t + b` per tile.

    `x_plus` has `num_tiles * event_size` entries and `x_minus`
    (`conditional_input`) `num_tiles * conditional_size`, both tile-major. With
    one tile this is the F-MLP weight matrix `W x = R x_plus + W' x_minus`
    (paper, Sec. 3); with many tiles and shared weights it is a convolution
    whose stride equals its width (Appendix A.7.1). `R` is square and stored as
    `P L U` (`tfb.ScaleMatvecLU`), initialised at a random rotation.

    With `extra_conditional_size=C > 0` (a conditional funnel `p(x | c)`),
    `conditional_input` is `concat([x_minus, c])` and a learned linear function
    of `c` (`V`, `[C, num_tiles * event_size]`, zero-initialised) is added to
    the whole of `z`: `z = R x_plus + W' x_minus + V c + b`. The offset does
    not depend on `x_plus`, so the Jacobian, and the log-det, are unchanged.

    Inverse (density): `z_t = R x_plus_t + W' x_minus_t (+ (V c)_t) + b`.
    Forward (sampling): `x_plus_t = R^-1 (z_t - W' x_minus_t (- (V c)_t) - b)`
    (paper Eq. 21). `log|det dz/dx_plus| = num_tiles * log|det R|`. For the
    1-D kernel `[a, b]` with stride 2 over n inputs (R = a, n/2 tiles) that is
    `(n/2) log|a|`, not the paper's `log((n/2)|a|)`.

    #### Examples

    ```python
    f = FunnelLinear(event_size=3, conditional_size=5)          # F-MLP: 8 -> 3
    conv = FunnelLinear(event_size=1, conditional_size=3, num_tiles=16)  # 2x2 tiles, 8x8
    z = conv.inverse(x_plus, conditional_input=x_minus)         # [N, 16]
    g = FunnelLinear(3, 5, extra_conditional_size=2)            # given c: [..., 5 + 2]
    z = g.inverse(x_plus, conditional_input=tf.concat([x_minus, c], -1))
    ```
    """

    def __init__(self, event_size, conditional_size, num_tiles=1, seed=0, dtype=tf.float32,
                 validate_args=False, name="funnel_linear", extra_conditional_size=0):
        parameters = dict(locals())
        event_size = validation.positive_int(event_size, "event_size")
        self._conditional_size = validation.positive_int(conditional_size, "conditional_size")
        self._num_tiles = validation.positive_int(num_tiles, "num_tiles")
        self._extra = validation.positive_int(extra_conditional_size, "extra_conditional_size",
                                              allow_zero=True)
        dtype = validation.float_dtype(dtype)
        specs = {"kernel": ((event_size, conditional_size), "glorot_uniform"),
                 "bias": ((event_size,), "zeros")}
        if self._extra:
            specs["condition_kernel"] = ((self._extra, self._num_tiles * event_size), "zeros")

        def make_layers(scope):
            self._params, self._lu = lu_parameters(
                event_size, seed, dtype, keras_layer_name(scope, "_params"), validate_args,
                extra_specs=specs)
            return {"params": self._params}

        super().__init__(parameters, make_layers, event_size, dtype,
                         validate_args=validate_args, name=name,
                         conditional_size=self._num_tiles * self._conditional_size + self._extra)

    @property
    def event_size(self):
        """Size of `x_plus` (all tiles)."""
        return self._event_size * self._num_tiles

    def _tiles(self, t, width):
        return tf.reshape(t, tf.concat([tf.shape(t)[:-1], [self._num_tiles, width]], 0))

    def _offset(self, conditional_input, like):
        if conditional_input is None:
            raise ValueError("FunnelLinear is conditional: pass `conditional_input` (x_minus) of "
                             f"shape [..., {self.conditional_size}].")
        c = tf.convert_to_tensor(conditional_input, self.dtype)
        x_minus = c[..., :self._num_tiles * self._conditional_size]
        off = dense(self._tiles(x_minus, self._conditional_size),
                    self._params.variable("kernel"), transpose_kernel=True)
        off = off + self._params.variable("bias")
        if self._extra:
            extra = dense(c[..., self._num_tiles * self._conditional_size:],
                          self._params.variable("condition_kernel"))
            off = off + self._tiles(extra, self._event_size)
        return tf.broadcast_to(off, tf.broadcast_dynamic_shape(tf.shape(off), tf.shape(like)))

    def _inverse(self, x, conditional_input=None):
        x_t = self._tiles(x, self._event_size)
        z = dense(x_t, lu_matrices(self._lu)[0], transpose_kernel=True)  # one [D, D] matrix
        z = z + self._offset(conditional_input, x_t)
        return tf.reshape(z, tf.concat([tf.shape(z)[:-2], [-1]], 0))

    def _forward(self, z, conditional_input=None):
        z_t = self._tiles(z, self._event_size)
        x = dense(z_t - self._offset(conditional_input, z_t), lu_matrices(self._lu)[1],
                  transpose_kernel=True)
        return tf.reshape(x, tf.concat([tf.shape(x)[:-2], [-1]], 0))

    def _log_det_r(self):
        lu = self._params.variable("lower_upper")
        return tf.reduce_sum(tf.math.log(tf.abs(tf.linalg.diag_part(lu))))

    def _inverse_log_det_jacobian(self, x, conditional_input=None):
        return tf.broadcast_to(self._num_tiles * self._log_det_r(), tf.shape(x)[:-1])

    def _forward_log_det_jacobian(self, z, conditional_input=None):
        return -self._inverse_log_det_jacobian(z, conditional_input)
