"""A rational-quadratic spline with a cancellation-free inverse (float32-safe).

`tfb.RationalQuadraticSpline` (Durkan, Bekasov, Murray and Papamakarios,
"Neural Spline Flows", NeurIPS 2019) inverts a bin by solving
`a xi^2 + b xi + c = 0` with `xi = 2c / (-b - sqrt(b^2 - 4ac))`. Its
`a`, `b` and the discriminant are differences of terms much larger than
themselves when a bin is flat (height << width) and its knot slopes are
unequal, which is where a flow sends outliers: in float32 the discriminant
then comes out negative and the inverse and its log-det are NaN (measured:
`b^2 = 2.9519e-10`, `4ac = 2.9530e-10` for a point `2e-6` below a knot).

With `r = (y - y_k) / h_k` and `r1 = (y_{k+1} - y) / h_k` (each computed from
its own knot, `r + r1 = 1`), `s = h_k / w_k` and knot slopes `d0, d1`, the
discriminant over `h_k^2` is a sum of squares,

    D = (d0 r1 - d1 r)^2 + 4 s^2 r r1 >= 0,

and the root is `xi = 2 s r / (2 s r + u + sqrt(D))` with `u = d0 r1 - d1 r`;
for `u < 0` the sum `u + sqrt(D)` is evaluated as `4 s^2 r r1 / (sqrt(D) - u)`.
Every term is then non-negative: no cancellation, no NaN. `1 - xi` is
computed by the mirrored formula (swap `r, r1` and `d0, d1`) and the point is
placed from the nearer knot. The forward map and the log-derivative use the
positive forms `s (xi^2 + (1 - xi)^2) + (d0 + d1) xi (1 - xi)` of the
denominator, with `xi` and `1 - xi` each measured from its own knot.

What no formula can fix: where the spline is nearly flat (derivative down to
about `4 s^2 / d ~ 1e-7` with the minimum bins of `funnel_maps.spline_parameters`)
the inverse is ill-conditioned, `dx = dy / f'(x)`, so one float32 rounding of
`y` (`~2.4e-7` at |y| = 4) moves `x` by up to `dy / f'`. The inverse is then
accurate to that amount and finite; `docs/numerics.md` has the measured ranges.
"""

import functools

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.internal.math import UNIT_SOFTPLUS_SHIFT

tfb = tfp.bijectors


def _knots(sizes, start):
    """Knot positions `start, start + cumsum(sizes)`, shape `[..., K + 1]`."""
    cum = tf.math.cumsum(sizes, axis=-1)
    return tf.concat([tf.zeros_like(cum[..., :1]), cum], axis=-1) + start


def _pad_slopes(slopes, like):
    """Unit slopes at both ends: the spline joins the identity outside its interval."""
    slopes = tf.convert_to_tensor(slopes, like.dtype)
    if slopes.shape.rank == 0:
        slopes = slopes[tf.newaxis]
    ones = tf.ones_like(slopes[..., :1])
    return tf.concat([ones, slopes, ones], axis=-1)


MIN_BIN_FRACTION = 1e-3  # every bin keeps at least this fraction of the interval
MIN_SLOPE = 1e-3


def spline_parameters(raw, num_bins, bound):
    """Knots of a monotone rational-quadratic spline on `[-bound, bound]` from raw outputs.

    `raw[..., :K]` and `raw[..., K:2K]` give the bin widths and heights
    (softmax, each bin at least `MIN_BIN_FRACTION` of the interval `2 bound`),
    `raw[..., 2K:]` the `K - 1` interior knot slopes,
    `MIN_SLOPE + (1 - MIN_SLOPE) softplus(raw + log(e - 1))`. Zero `raw` gives
    equal bins and unit slopes: exactly the identity. The minima (1e-3 of the
    interval per bin, slopes >= 1e-3) are those of Durkan et al.; they bound a
    bin's slope `h / w` below by about 1e-3, but inside a bin the derivative can
    still fall to about `4 (h / w)^2 / d ~ 1e-7` (`docs/numerics.md`). Use the
    knots with `bijectors.spline.StableRationalQuadraticSpline`, whose inverse
    is finite everywhere in float32. This is the one bin computation of the
    library's splines (Durkan, Bekasov, Murray and Papamakarios, "Neural Spline
    Flows", NeurIPS 2019).

    Args:
      raw: `[..., 3 num_bins - 1]` unconstrained parameters.
      num_bins: K.
      bound: half-width of the spline's interval (identity outside).

    Returns:
      `(bin_widths, bin_heights, knot_slopes)` for
      `tfb.RationalQuadraticSpline(..., range_min=-bound)`.
    """
    k, interval = num_bins, 2.0 * bound

    def bins(p):
        return (tf.nn.softmax(p, axis=-1) * (1 - MIN_BIN_FRACTION * k)
                + MIN_BIN_FRACTION) * interval

    # One split, not three slices: the gradient of a split is one concatenation, that of
    # three slices a sum of three pads, which XLA on CPU fused with the spline's whole
    # elementwise backward and evaluated for each of the 3K - 1 outputs (NSF 64-D step
    # 0.58x with the split; docs/performance.md).
    widths, heights, slopes = tf.split(raw, [k, k, k - 1], axis=-1)
    slopes = MIN_SLOPE + (1 - MIN_SLOPE) * tf.nn.softplus(slopes + UNIT_SOFTPLUS_SHIFT)
    return bins(widths), bins(heights), slopes


class StableRationalQuadraticSpline(tfb.RationalQuadraticSpline):
    """`tfb.RationalQuadraticSpline` with a NaN-free inverse and consistent log-dets.

    Same constructor, parameters and map as TFP's (identity outside
    `[range_min, range_min + sum(bin_widths)]`); the inverse solves each bin's
    quadratic in the cancellation-free form of the module docstring, in- and
    outputs are clamped to their bin, and `inverse_log_det_jacobian` is
    evaluated at the bin position the inverse found (not by searching the bins
    again). Drop-in for TFP's class.

    #### Examples

    ```python
    spline = StableRationalQuadraticSpline(*spline_parameters(raw, 8, 4.0), range_min=-4.0)
    x = spline.inverse(y)                       # finite for every finite y
    ```
    """

    def _bins(self, t, use_y):
        """Bin data for `t` (x if not `use_y`, else y): knots, sizes, slopes, out-of-bounds."""
        dtype = t.dtype
        range_min = tf.cast(self.range_min, dtype)
        kx = _knots(tf.convert_to_tensor(self.bin_widths, dtype), range_min)
        ky = _knots(tf.convert_to_tensor(self.bin_heights, dtype), range_min)
        kd = _pad_slopes(self.knot_slopes, kx)
        knots = ky if use_y else kx
        out = (t <= knots[..., 0]) | (t >= knots[..., -1])
        t_in = tf.where(out, (knots[..., 0] + knots[..., 1]) / 2, t)  # safe, inside bin 0
        shape = functools.reduce(tf.broadcast_dynamic_shape, (
            tf.shape(t_in[..., tf.newaxis]), tf.shape(kx), tf.shape(ky), tf.shape(kd)))
        kx, ky, kd = (tf.broadcast_to(k, shape) for k in (kx, ky, kd))
        t_in = tf.broadcast_to(t_in, shape[:-1])
        knots = ky if use_y else kx
        # The bin: the number of interior knots <= t (t_in is inside the interval), the
        # same index as `searchsorted(knots[..., :-1], t, side="right") - 1`. Its knots
        # are picked by one-hot masks, not `tf.gather`: a gather's gradient is a scatter,
        # which XLA on CPU runs serially; a masked sum's gradient is a product.
        idx = tf.reduce_sum(tf.cast(t_in[..., tf.newaxis] >= knots[..., 1:-1], tf.int32),
                            axis=-1, keepdims=True)
        positions = tf.range(tf.shape(knots)[-1])
        lower = tf.cast(tf.equal(idx, positions), dtype)
        upper = tf.cast(tf.equal(idx + 1, positions), dtype)

        def at(params, mask):
            return tf.reduce_sum(params * mask, axis=-1)

        bins = {"x0": at(kx, lower), "x1": at(kx, upper), "y0": at(ky, lower),
                "y1": at(ky, upper), "d0": at(kd, lower), "d1": at(kd, upper)}
        bins["w"], bins["h"] = bins["x1"] - bins["x0"], bins["y1"] - bins["y0"]
        bins["s"] = bins["h"] / bins["w"]
        return bins, t_in, tf.broadcast_to(out, tf.shape(t_in))

    @staticmethod
    def _log_slope(b, xi, xi1):
        """`log f'` at bin position `xi` (`xi1 = 1 - xi`), every term non-negative."""
        s, d0, d1 = b["s"], b["d0"], b["d1"]
        den = s * (xi**2 + xi1**2) + (d0 + d1) * xi * xi1
        return (2 * tf.math.log(s) + tf.math.log(d1 * xi**2 + 2 * s * xi * xi1 + d0 * xi1**2)
                - 2 * tf.math.log(den))

    def _forward_parts(self, x):
        b, x_in, out = self._bins(x, use_y=False)
        xi = tf.clip_by_value((x_in - b["x0"]) / b["w"], 0, 1)
        xi1 = tf.clip_by_value((b["x1"] - x_in) / b["w"], 0, 1)
        return b, xi, xi1, out

    def _inverse_parts(self, y):
        b, y_in, out = self._bins(y, use_y=True)
        s, d0, d1 = b["s"], b["d0"], b["d1"]
        r = tf.clip_by_value((y_in - b["y0"]) / b["h"], 0, 1)
        r1 = tf.clip_by_value((b["y1"] - y_in) / b["h"], 0, 1)
        u = d0 * r1 - d1 * r
        q = 4 * s**2 * r * r1
        root = tf.sqrt(u**2 + q)

        def plus_root(v):  # v + sqrt(v^2 + q) without cancellation for v < 0
            safe = tf.where(v < 0, root - v, tf.ones_like(v))
            return tf.where(v < 0, q / safe, v + root)

        xi = tf.clip_by_value(2 * s * r / (2 * s * r + plus_root(u)), 0, 1)
        xi1 = tf.clip_by_value(2 * s * r1 / (2 * s * r1 + plus_root(-u)), 0, 1)
        return b, xi, xi1, out

    def _forward(self, x):
        b, xi, xi1, out = self._forward_parts(x)
        return self._place_y(b, xi, xi1, x, out)

    @staticmethod
    def _place_y(b, xi, xi1, x, out):
        s, d0, d1 = b["s"], b["d0"], b["d1"]
        den = s * (xi**2 + xi1**2) + (d0 + d1) * xi * xi1
        lower = b["h"] * (s * xi**2 + d0 * xi * xi1) / den   # rise from y0
        upper = b["h"] * (s * xi1**2 + d1 * xi * xi1) / den  # drop to y1
        y = tf.where(xi <= xi1, b["y0"] + lower, b["y1"] - upper)
        y = tf.clip_by_value(y, b["y0"], b["y1"])
        return tf.where(out, x, y)

    @staticmethod
    def _place_x(b, xi, xi1, y, out):
        x = tf.where(xi <= xi1, b["x0"] + xi * b["w"], b["x1"] - xi1 * b["w"])
        x = tf.clip_by_value(x, b["x0"], b["x1"])
        return tf.where(out, y, x)

    def _inverse(self, y):
        b, xi, xi1, out = self._inverse_parts(y)
        return self._place_x(b, xi, xi1, y, out)

    def inverse_and_log_det(self, y):
        """`(inverse(y), elementwise inverse log-det)` from one bin search (no reduction).

        Used by `bijectors.one_pass.OnePassRealNVP`: the same values as `inverse`
        and `inverse_log_det_jacobian(y, event_ndims=0)`, computed once.
        """
        y = tf.convert_to_tensor(y, self.dtype)
        b, xi, xi1, out = self._inverse_parts(y)
        ildj = tf.where(out, tf.zeros([], y.dtype), -self._log_slope(b, xi, xi1))
        return self._place_x(b, xi, xi1, y, out), ildj

    def forward_and_log_det(self, x):
        """`(forward(x), elementwise forward log-det)` from one bin search (no reduction)."""
        x = tf.convert_to_tensor(x, self.dtype)
        b, xi, xi1, out = self._forward_parts(x)
        fldj = tf.where(out, tf.zeros([], x.dtype), self._log_slope(b, xi, xi1))
        return self._place_y(b, xi, xi1, x, out), fldj

    def _forward_log_det_jacobian(self, x):
        b, xi, xi1, out = self._forward_parts(x)
        return tf.where(out, tf.zeros([], x.dtype), self._log_slope(b, xi, xi1))

    def _inverse_log_det_jacobian(self, y):
        b, xi, xi1, out = self._inverse_parts(y)
        return tf.where(out, tf.zeros([], y.dtype), -self._log_slope(b, xi, xi1))
