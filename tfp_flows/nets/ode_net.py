"""Time-conditioned vector field `f(t, z[, c]) -> dz/dt` for continuous-time flows (FFJORD)."""

import keras
import tensorflow as tf

from tfp_flows.internal import validation

_ACTIVATIONS = ("tanh", "softplus", "elu", "silu", "gelu", "sigmoid")


@keras.saving.register_keras_serializable(package="tfp_flows")
class ODENet(keras.layers.Layer):
    """A stack of concat-squash layers: a vector field conditioned on time.

    Each layer maps `h -> (W h + b) * sigmoid(w_g t + b_g) + w_b t`, the
    "ConcatSquash" layer of FFJORD's reference code: time both gates (squashes)
    and shifts every unit. Hidden layers are followed by `activation`; the last
    layer is linear. The first layer sees `[z, c]` when a conditional input of
    size `conditional_size` is given; `c` must have the batch shape of `z`
    (`FFJORD` broadcasts it).

    Smooth activations only (no ReLU): the trace of the Jacobian and the ODE
    solver's error control both assume a differentiable field.

    Args:
      event_size: size `D` of `z` (and of the output).
      hidden_units: widths of the hidden layers.
      activation: 'tanh' (default), 'softplus', 'elu', 'silu', 'gelu' or 'sigmoid'.
      conditional_size: size of the conditional input (0: none).
      zero_init_output: start with a zero output kernel and shift, so the flow
        starts at the identity map (default True).

    `call(t, z, conditional_input=None)`: `t` a scalar, `z` of shape `[..., D]`;
    returns `[..., D]`. The layer is built in the constructor.

    #### Examples

    ```python
    net = tfp_flows.nets.ODENet(event_size=2, hidden_units=(64, 64))
    dz = net(tf.constant(0.5), tf.zeros([16, 2]))
    ```
    """

    def __init__(self, event_size, hidden_units=(64, 64), activation="tanh", conditional_size=0,
                 zero_init_output=True, **kwargs):
        super().__init__(**kwargs)
        self.event_size = validation.positive_int(event_size, "event_size")
        self.hidden_units = validation.int_tuple(hidden_units, "hidden_units")
        self.activation = validation.one_of(activation, "activation", _ACTIVATIONS)
        self.conditional_size = validation.positive_int(
            conditional_size, "conditional_size", allow_zero=True)
        self.zero_init_output = bool(zero_init_output)
        self._act = keras.activations.get(self.activation)
        self.build((None, self.event_size))

    def build(self, input_shape):
        if self.built:
            return
        fan_in = self.event_size + self.conditional_size
        widths = (*self.hidden_units, self.event_size)
        self._blocks = []
        for i, width in enumerate(widths):
            last = i == len(widths) - 1
            init = "zeros" if (last and self.zero_init_output) else "glorot_uniform"
            self._blocks.append((
                self.add_weight(shape=(fan_in, width), initializer=init, name=f"kernel_{i}"),
                self.add_weight(shape=(width,), initializer="zeros", name=f"bias_{i}"),
                self.add_weight(shape=(width,), initializer="glorot_uniform"
                                if width > 1 else "zeros", name=f"gate_weight_{i}"),
                self.add_weight(shape=(width,), initializer="zeros", name=f"gate_bias_{i}"),
                self.add_weight(shape=(width,), initializer="zeros" if last else "glorot_uniform",
                                name=f"time_shift_{i}"),
            ))
            fan_in = width
        self.built = True

    def call(self, t, z, conditional_input=None):
        # Rank-2 matmuls with the time gate folded into the weights: no einsum or
        # dynamic-shape broadcasting, whose gradients XLA cannot compile inside a
        # while loop when the batch size is unknown at trace time (Keras `fit`).
        h = z if conditional_input is None else tf.concat(
            [z, tf.cast(conditional_input, z.dtype)], axis=-1)
        h = tf.reshape(h, [-1, self.event_size + self.conditional_size])
        t = tf.cast(t, h.dtype)
        for i, (kernel, bias, gate_w, gate_b, shift) in enumerate(self._blocks):
            gate = tf.sigmoid(gate_w * t + gate_b)
            # (h W + b) * gate + shift * t  ==  h (W * gate) + (b * gate + shift * t)
            h = tf.nn.bias_add(tf.matmul(h, kernel * gate), bias * gate + shift * t)
            if i < len(self._blocks) - 1:
                h = self._act(h)
        return tf.reshape(h, tf.concat([tf.shape(z)[:-1], [self.event_size]], 0))

    def get_config(self):
        return {**super().get_config(), "event_size": self.event_size,
                "hidden_units": list(self.hidden_units), "activation": self.activation,
                "conditional_size": self.conditional_size,
                "zero_init_output": self.zero_init_output}
