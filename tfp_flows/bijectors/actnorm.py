"""ActNorm: per-dimension affine map with data-dependent initialisation (Glow)."""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.bijectors.base import KerasBijector, keras_layer_name
from tfp_flows.internal import validation
from tfp_flows.nets.mlp import Parameters

tfb = tfp.bijectors

MIN_SCALE = 1e-3  # ActNorm's initial scale is at least this fraction of max(1, |mean|)


class ActNorm(KerasBijector):
    """Elementwise affine bijector whose statistics are set from the first batch.

    Forward (sampling direction): `y = x * exp(log_scale) + loc`.
    Inverse (density direction):  `x = (y - loc) * exp(-log_scale)`.
    `log|det J_forward| = sum(log_scale)`, broadcast to the batch shape.

    `initialize_from_data(y)` sets `loc = mean(y)` and
    `log_scale = log max(std(y), MIN_SCALE * max(1, |mean(y)|))` over all batch
    axes, so the inverse standardises the data as it arrives at this layer
    (Kingma & Dhariwal, "Glow: Generative flow with invertible 1x1
    convolutions", NeurIPS 2018). The floor keeps a (nearly) constant
    dimension from getting a scale of `1/std ~ 1e6` (the old `std + 1e-6`),
    which would turn float32 rounding of the data (relative 6e-8 of `|mean|`)
    into O(1) errors of the standardised value. It runs once; a non-trainable flag in
    the weights records it, so a restored model is not re-initialised.

    #### Examples

    ```python
    act = tfp_flows.bijectors.ActNorm(event_size=2)
    flow = tfd.TransformedDistribution(tfd.MultivariateNormalDiag(tf.zeros(2)), act)
    act.initialize_from_data(x_batch)   # or FlowModel.initialize_from_data
    ```
    """

    def __init__(self, event_size, dtype=tf.float32, validate_args=False, name="act_norm"):
        parameters = dict(locals())
        event_size = validation.positive_int(event_size, "event_size")
        dtype = validation.float_dtype(dtype)

        def make_layers(scope):
            self._params = Parameters(
                {"loc": ((event_size,), "zeros"), "log_scale": ((event_size,), "zeros"),
                 "initialized": ((), "zeros")},
                trainable_names=("loc", "log_scale"), dtype=dtype.name,
                name=keras_layer_name(scope, "_params"))
            return {"params": self._params}

        super().__init__(parameters, make_layers, event_size, dtype,
                         validate_args=validate_args, name=name)

    def _loc_log_scale(self):
        return self._params.variable("loc"), self._params.variable("log_scale")

    def _forward(self, x):
        loc, log_scale = self._loc_log_scale()
        return x * tf.exp(log_scale) + loc

    def _inverse(self, y):
        loc, log_scale = self._loc_log_scale()
        return (y - loc) * tf.exp(-log_scale)

    def _forward_log_det_jacobian(self, x):
        _, log_scale = self._loc_log_scale()
        return tf.broadcast_to(tf.reduce_sum(log_scale), tf.shape(x)[:-1])

    def _inverse_log_det_jacobian(self, y):
        return -self._forward_log_det_jacobian(y)

    def initialize_from_data(self, y):
        """Sets the statistics from data `y` (density-direction input), once."""
        if float(self._params.weight("initialized").numpy()) > 0:
            return
        y = tf.reshape(tf.convert_to_tensor(y, self.dtype), [-1, self._event_size])
        mean = tf.reduce_mean(y, axis=0)
        std = tf.math.reduce_std(y, axis=0)
        self._params.weight("loc").assign(mean)
        floor = MIN_SCALE * tf.maximum(tf.abs(mean), 1.0)
        self._params.weight("log_scale").assign(tf.math.log(tf.maximum(std, floor)))
        self._params.weight("initialized").assign(1.0)
