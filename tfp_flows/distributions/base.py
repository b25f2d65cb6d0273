"""Shared base for the library's distributions that are not bijections.

Funnels, augmented (marginalising) flows and LGF stacks are `tfd.Distribution`
subclasses over vectors `[..., D]` with batch shape `[]`. Their weights live
in Keras layers (see `tfp_flows.internal.keras_owned`), recorded with
`self._own_keras_layers(...)` so `FlowModel` and TFP's `trainable_variables`
both see them. Each declares the flow contract (`tfp_flows.internal.contract`):
`conditional_size` (its `log_prob`, `sample` and bounds then take
`conditional_input=` of shape `[..., C]`), `log_prob_kind`, and whether its
`log_prob` draws random numbers (then it takes a stateless `seed=`).
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.internal import contract, keras_owned, validation

tfd = tfp.distributions


class FlowDistribution(contract.Declared, tfd.Distribution):
    """Base class: event shape `[event_size]`, batch shape `[]`, Keras-owned weights.

    Subclasses implement `_log_prob(x, **kwargs)` and `_sample_n(n, seed=None,
    **kwargs)`, the `log_prob_kind` property, call `self._check_input(x)` on
    user inputs and `self._own_keras_layers(...)` at the end of their
    constructor.

    Args:
      conditional_size: size of the `conditional_input` it takes (0: none).
      takes_seed: whether `log_prob` takes a stateless `seed=` (estimates).
    """

    def __init__(self, event_size, dtype=tf.float32, reparameterization_type=None,
                 validate_args=False, allow_nan_stats=True, parameters=None, name=None,
                 conditional_size=0, takes_seed=False):
        self._event_size = validation.positive_int(event_size, "event_size")
        contract.declare(self, validation.positive_int(conditional_size, "conditional_size",
                                                       allow_zero=True), takes_seed)
        super().__init__(
            dtype=validation.float_dtype(dtype),
            reparameterization_type=reparameterization_type or tfd.FULLY_REPARAMETERIZED,
            validate_args=validate_args, allow_nan_stats=allow_nan_stats,
            parameters=parameters, name=name or type(self).__name__)

    @property
    def log_prob_kind(self):
        """How exact `log_prob` is: one of `tfp_flows.internal.contract.KINDS`."""
        raise NotImplementedError(f"{type(self).__name__} must declare `log_prob_kind`.")

    @classmethod
    def _parameter_properties(cls, dtype, num_classes=None):
        return {}

    def _event_shape(self):
        return tf.TensorShape([self._event_size])

    def _event_shape_tensor(self):
        return tf.constant([self._event_size], tf.int32)

    def _batch_shape(self):
        return tf.TensorShape([])

    def _batch_shape_tensor(self):
        return tf.constant([], tf.int32)

    def _own_keras_layers(self, *layers):
        keras_owned.own_keras_layers(self, *layers)

    def _check_input(self, x, name="x"):
        """Converts `x`, checks its event size (static) and finiteness (`validate_args`)."""
        x = tf.convert_to_tensor(x, dtype=self.dtype, name=name)
        x = validation.check_event_size(x, self._event_size, type(self).__name__,
                                        self.validate_args)
        return validation.assert_finite(x, name, self.validate_args)
