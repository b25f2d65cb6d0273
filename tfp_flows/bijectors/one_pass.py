"""`tfb.RealNVP` and `tfb.MaskedAutoregressiveFlow` that run their conditioner once per call.

TFP's two classes compute a layer's output and its log-determinant in separate
methods, each calling the conditioner network: `TransformedDistribution.log_prob`
calls `inverse(y)` and then the log-det (at `y`, or at `x` through the
forward-log-det fallback), so every layer's network runs twice in the graph. XLA
merges the two identical forward evaluations, but reverse-mode differentiation
sees two uses of the network and back-propagates through both: the backward
pass, most of a training step, does twice the work it needs.

These subclasses take the same constructor arguments and compute the same maps;
`_forward` and `_inverse` evaluate the conditioner once and put the log-det of
the point they just mapped into TFP's bijector cache (the mechanism TFP's own
`tfb.FFJORD` uses, `tfp_compat.bijector_cache`), where `log_prob`,
`forward_log_det_jacobian` and `inverse_log_det_jacobian` find it. Called on a
point that was not just mapped, the log-det methods are TFP's (one more network
evaluation, as before).

For an affine coupling with `shift, log_scale = f(x_1)` (density direction
`x = (y - shift) exp(-log_scale)` on the transformed half) the cached value is
`log|det J_inverse| = -sum(log_scale)`; for a spline coupling it is the sum of
the spline's elementwise log-slopes, computed from the same bin search as the
inverse (`StableRationalQuadraticSpline.inverse_and_log_det`); for MAF it is
`-sum(log_scale)` of the one MADE pass on `y`.

Measured (docs/performance.md): the backward pass is where a step's time goes,
and sharing the network halves its conditioner part.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.internal import tfp_compat

tfb = tfp.bijectors


def _remember(bijector, direction, point, ildj, kwargs):
    """Stores `log|det J_inverse|` of the edge through `point` (TFP's cache is bidirectional)."""
    cache = tfp_compat.bijector_cache(bijector)
    attrs = (cache.inverse_attributes(point, **kwargs) if direction == "inverse"
             else cache.forward_attributes(point, **kwargs))
    attrs["ildj"] = ildj


def remember_ildj(bijector, direction, point, ildj, **kwargs):
    """`_remember` for a bijector's own `_forward` / `_inverse(point, **kwargs)`: the
    keyword arguments left at None were not passed to the public method (TFP's cache
    keys on the arguments as passed), so they are dropped from the key."""
    _remember(bijector, direction, point, ildj,
              {k: v for k, v in kwargs.items() if v is not None})


class OnePassRealNVP(tfb.RealNVP):
    """`tfb.RealNVP` whose conditioner runs once per forward / inverse call (same arguments).

    The fast path covers `num_masked >= 0` (what `bijectors.coupling.coupling_layer`
    builds); `fraction_masked` or a negative `num_masked` use TFP's methods unchanged.
    """

    def __init__(self, num_masked=None, fraction_masked=None, shift_and_log_scale_fn=None,
                 bijector_fn=None, is_constant_jacobian=False, validate_args=False, name=None):
        super().__init__(num_masked=num_masked, fraction_masked=fraction_masked,
                         shift_and_log_scale_fn=shift_and_log_scale_fn, bijector_fn=bijector_fn,
                         is_constant_jacobian=is_constant_jacobian, validate_args=validate_args,
                         name=name)
        self._one_pass_masked = (num_masked if num_masked is not None and num_masked >= 0
                                 else None)
        self._one_pass_affine = shift_and_log_scale_fn
        self._one_pass_bijector = bijector_fn

    def _split(self, t):
        m = self._one_pass_masked
        return t[..., :m], t[..., m:]

    def _map_half(self, t0, t1, inverse, kwargs):
        """The transformed half and its `log|det J_inverse|` (summed), one conditioner call."""
        units = t1.shape[-1]
        if self._one_pass_affine is not None:
            shift, log_scale = self._one_pass_affine(t0, units, **kwargs)
            ildj = -tf.reduce_sum(log_scale, axis=-1)
            if inverse:
                return (t1 - shift) * tf.exp(-log_scale), ildj
            return t1 * tf.exp(log_scale) + shift, ildj
        inner = self._one_pass_bijector(t0, units, **kwargs)
        if inverse:
            if hasattr(inner, "inverse_and_log_det"):
                out, ildj = inner.inverse_and_log_det(t1)
                return out, tf.reduce_sum(ildj, axis=-1)
            return inner.inverse(t1), inner.inverse_log_det_jacobian(t1, event_ndims=1)
        if hasattr(inner, "forward_and_log_det"):
            out, fldj = inner.forward_and_log_det(t1)
            return out, -tf.reduce_sum(fldj, axis=-1)
        return inner.forward(t1), -inner.forward_log_det_jacobian(t1, event_ndims=1)

    def _one_pass(self, t, inverse, kwargs):
        t0, t1 = self._split(t)
        out, ildj = self._map_half(t0, t1, inverse, kwargs)
        out = tf.concat([t0, out], axis=-1)
        _remember(self, "inverse" if inverse else "forward", t, ildj, kwargs)
        return out

    def _forward(self, x, **kwargs):
        if self._one_pass_masked is None:
            return super()._forward(x, **kwargs)
        return self._one_pass(x, False, kwargs)

    def _inverse(self, y, **kwargs):
        if self._one_pass_masked is None:
            return super()._inverse(y, **kwargs)
        return self._one_pass(y, True, kwargs)


class OnePassMaskedAutoregressiveFlow(tfb.MaskedAutoregressiveFlow):
    """`tfb.MaskedAutoregressiveFlow` whose density pass (`inverse`) runs the network once
    for the map and its log-det (same arguments). With `bijector_fn` or `event_ndims != 1`
    TFP's methods are used unchanged; sampling (`forward`, D passes) is TFP's."""

    def __init__(self, shift_and_log_scale_fn=None, bijector_fn=None, is_constant_jacobian=False,
                 validate_args=False, unroll_loop=False, event_ndims=1, name=None):
        super().__init__(shift_and_log_scale_fn=shift_and_log_scale_fn, bijector_fn=bijector_fn,
                         is_constant_jacobian=is_constant_jacobian, validate_args=validate_args,
                         unroll_loop=unroll_loop, event_ndims=event_ndims, name=name)
        self._one_pass_fn = (shift_and_log_scale_fn
                             if shift_and_log_scale_fn is not None and event_ndims == 1
                             else None)

    def _inverse(self, y, **kwargs):
        if self._one_pass_fn is None:
            return super()._inverse(y, **kwargs)
        params = self._one_pass_fn(y, **kwargs)
        shift, log_scale = (tf.unstack(params, num=2, axis=-1) if tf.is_tensor(params)
                            else params)
        _remember(self, "inverse", y, -tf.reduce_sum(log_scale, axis=-1), kwargs)
        return (y - shift) * tf.exp(-log_scale)
