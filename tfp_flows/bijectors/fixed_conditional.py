"""`FixedConditional`: a conditional bijector with its `conditional_input` baked in."""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.internal import contract, keras_owned

tfb = tfp.bijectors


class FixedConditional(tfb.Bijector):
    """`bijector` at a fixed `conditional_input`: an ordinary (unconditional) bijector.

    `forward(x) = bijector.forward(x, conditional_input=c)`, likewise inverse and
    log-determinants. The condition (shape `[C]`, or broadcastable to the batch)
    is broadcast to the batch of each input and routed to every conditional part
    of `bijector`, chains included. Used by the generic checks (a funnel map at
    a fixed `x_minus`, an LGF layer at a fixed index `u`) and to pin a
    conditional flow to one condition.

    #### Examples

    ```python
    flow = tfp_flows.flows.real_nvp(event_size=2, conditional_size=3)
    pinned = tfd.TransformedDistribution(
        flow.distribution, FixedConditional(flow.bijector, [0.1, 0.2, 0.3]))
    pinned.sample(5)          # five samples of p(y | c)
    ```
    """

    def __init__(self, bijector, conditional_input, validate_args=False,
                 name="fixed_conditional"):
        parameters = dict(locals())
        if not isinstance(bijector, tfb.Bijector):
            raise TypeError(f"`bijector` must be a tfb.Bijector; got {type(bijector).__name__}.")
        if not contract.is_conditional(bijector):
            raise ValueError("`bijector` must take `conditional_input` (declare it with "
                             "`conditional_size` or `mark_conditional`); got an unconditional "
                             "bijector.")
        with tf.name_scope(name) as scope:
            self._bijector = bijector
            self._condition = contract.check_conditional_input(
                bijector, conditional_input, owner="FixedConditional")
            super().__init__(forward_min_event_ndims=1, dtype=bijector.dtype,
                             validate_args=validate_args, parameters=parameters, name=scope)
        contract.declare(self, conditional_size=0)
        keras_owned.own_keras_layers(self, *keras_owned.find_keras_layers(bijector))

    @property
    def bijector(self):
        """The wrapped conditional bijector."""
        return self._bijector

    @property
    def conditional_input(self):
        """The fixed condition `c` (a tensor)."""
        return self._condition

    @property
    def log_prob_kind(self):
        """The wrapped bijector's `log_prob_kind`."""
        return contract.log_prob_kind(self._bijector)

    @classmethod
    def _parameter_properties(cls, dtype):
        return {}

    def _kw(self, x):
        shape = tf.concat([tf.shape(x)[:-1], tf.shape(self._condition)[-1:]], 0)
        return contract.route(self._bijector, tf.broadcast_to(self._condition, shape))

    def _forward(self, x):
        return self._bijector.forward(x, **self._kw(x))

    def _inverse(self, y):
        return self._bijector.inverse(y, **self._kw(y))

    def _forward_log_det_jacobian(self, x):
        return self._bijector.forward_log_det_jacobian(x, event_ndims=1, **self._kw(x))

    def _inverse_log_det_jacobian(self, y):
        return self._bijector.inverse_log_det_jacobian(y, event_ndims=1, **self._kw(y))

    def initialize_from_data(self, y):
        """Data-dependent initialisation of the wrapped bijector on `y` at the fixed condition."""
        shape = tf.concat([tf.shape(y)[:-1], tf.shape(self._condition)[-1:]], 0)
        contract.initialize_from_data(self._bijector, y, tf.broadcast_to(self._condition, shape))
