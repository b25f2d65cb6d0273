"""Dense conditioner networks and a parameter holder, written for any input rank.

Keras' `Dense` insists on rank >= 2 inputs; bijectors must accept inputs of
shape `[..., D]` including `[D]`, so these layers contract the last axis
themselves, with `dense`: one rank-2 matmul whatever the input's rank.
"""

import keras
import tensorflow as tf

from tfp_flows.internal import validation

_ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "silu", "softplus", "sigmoid")


def dense(x, kernel, transpose_kernel=False):
    """`x @ kernel` over the last axis of `x` (`[..., I] x [I, J] -> [..., J]`; with
    `transpose_kernel`, `kernel` is `[J, I]`), as one rank-2 `tf.matmul`.

    Not `tf.einsum("...i,ij->...j")`: its gradient with respect to the kernel is
    formed per row, as the outer products `x_b^T g_b` (a `[batch, I, J]` tensor), and
    then summed over the batch; XLA on CPU runs that as an elementwise loop instead
    of a matrix product. Measured on a 5-layer RealNVP, 64-D, batch 512: the einsum
    step took 2.5 times a hand-written one (docs/performance.md). A rank-2 input
    (the usual case) is not reshaped.
    """
    if x.shape.rank == 2:
        return tf.matmul(x, kernel, transpose_b=transpose_kernel)
    width = kernel.shape[0] if transpose_kernel else kernel.shape[-1]
    flat = tf.reshape(x, [-1, tf.shape(x)[-1]])
    out = tf.matmul(flat, kernel, transpose_b=transpose_kernel)
    return tf.reshape(out, tf.concat([tf.shape(x)[:-1], [width]], 0))


def check_condition(layer, conditional_input):
    """A conditional layer needs its condition; an unconditional one takes none.

    Same message as `contract.check_conditional_input`, so a conditional flow
    called without its condition fails here (not in an einsum) the same way.
    """
    size = layer.conditional_size
    if size and conditional_input is None:
        raise ValueError(f"{layer.name}: `conditional_input` is required: expected a tensor of "
                         f"shape [..., {size}]; got None.")
    if not size and conditional_input is not None:
        raise ValueError(f"{layer.name}: `conditional_input` must be None for an unconditional "
                         "flow (build it with `conditional_size=C` to condition it); got a "
                         f"{type(conditional_input).__name__}.")


def concat_condition(x, conditional_input):
    """Concatenates a conditional input, broadcasting batch dimensions."""
    if conditional_input is None:
        return x
    c = tf.cast(conditional_input, x.dtype)
    batch = tf.broadcast_dynamic_shape(tf.shape(x)[:-1], tf.shape(c)[:-1])
    x = tf.broadcast_to(x, tf.concat([batch, tf.shape(x)[-1:]], 0))
    c = tf.broadcast_to(c, tf.concat([batch, tf.shape(c)[-1:]], 0))
    return tf.concat([x, c], axis=-1)


@keras.saving.register_keras_serializable(package="tfp_flows")
class MLP(keras.layers.Layer):
    """Multi-layer perceptron `R^{in (+ cond)} -> R^{out}` with a zero-initialised output.

    The output layer starts at zero so a flow whose conditioners are MLPs starts
    at the identity (the affine scale is `exp(0) = 1`, the shift 0).

    Args:
      output_units: size of the output.
      hidden_units: sizes of the hidden layers.
      activation: name of a Keras activation.
      residual: if True, hidden layers of equal width are joined by skip
        connections (a residual MLP); needs all hidden widths equal.
      conditional_size: size of an optional conditional input concatenated to
        the input (0 for none).
      zero_init_output: zero-initialise the output layer (default True).
    """

    def __init__(self, output_units, hidden_units=(64, 64), activation="relu", residual=False,
                 conditional_size=0, zero_init_output=True, **kwargs):
        super().__init__(**kwargs)
        self.output_units = validation.positive_int(output_units, "output_units")
        self.hidden_units = validation.int_tuple(hidden_units, "hidden_units")
        self.activation = validation.one_of(activation, "activation", _ACTIVATIONS)
        self.residual = bool(residual)
        if self.residual and len(set(self.hidden_units)) > 1:
            raise ValueError("`hidden_units` must all be equal when `residual=True`; "
                             f"got {self.hidden_units}.")
        self.conditional_size = validation.positive_int(
            conditional_size, "conditional_size", allow_zero=True)
        self.zero_init_output = bool(zero_init_output)
        self._act = keras.activations.get(self.activation)

    def build(self, input_shape):
        """Creates the kernels and biases (the output layer zero-initialised if asked)."""
        fan_in = int(input_shape[-1]) + self.conditional_size
        self.kernels, self.biases = [], []
        widths = (*self.hidden_units, self.output_units)
        for i, width in enumerate(widths):
            last = i == len(widths) - 1
            init = "zeros" if (last and self.zero_init_output) else "glorot_uniform"
            self.kernels.append(self.add_weight(shape=(fan_in, width), initializer=init,
                                                name=f"kernel_{i}"))
            self.biases.append(self.add_weight(shape=(width,), initializer="zeros",
                                               name=f"bias_{i}"))
            fan_in = width

    def call(self, inputs, conditional_input=None):
        """`MLP([inputs, conditional_input])`, `[..., output_units]`."""
        check_condition(self, conditional_input)
        h = concat_condition(inputs, conditional_input)
        num_hidden = len(self.hidden_units)
        for i, (kernel, bias) in enumerate(zip(self.kernels, self.biases, strict=True)):
            out = dense(h, kernel) + bias
            if i == num_hidden:
                return out
            out = self._act(out)
            h = h + out if (self.residual and i > 0) else out
        return h

    def get_config(self):
        return {**super().get_config(), "output_units": self.output_units,
                "hidden_units": list(self.hidden_units), "activation": self.activation,
                "residual": self.residual, "conditional_size": self.conditional_size,
                "zero_init_output": self.zero_init_output}


@keras.saving.register_keras_serializable(package="tfp_flows")
class Parameters(keras.layers.Layer):
    """Holds named free parameters (no computation) so Keras owns them.

    `Parameters({"loc": ((2,), "zeros")})` creates a weight `loc`; TFP objects
    read `layer.variable("loc")`, the underlying `tf.Variable`, so gradients
    flow to the Keras weight (a Keras variable handed to TFP directly would be
    converted to a constant).
    """

    def __init__(self, specs, trainable_names=None, **kwargs):
        super().__init__(**kwargs)
        self.specs = {k: (tuple(shape), init) for k, (shape, init) in specs.items()}
        self.trainable_names = (set(specs) if trainable_names is None
                                else set(trainable_names))
        self._weights_by_name = {}
        self.build(None)

    def build(self, input_shape):
        """Creates one weight per entry of `specs`."""
        if self.built:
            return
        for key, (shape, init) in self.specs.items():
            self._weights_by_name[key] = self.add_weight(
                shape=shape, initializer=init, name=key,
                trainable=key in self.trainable_names)
        self.built = True

    def variable(self, key):
        """The `tf.Variable` behind weight `key` (what TFP objects should hold)."""
        return self._weights_by_name[key].value

    def weight(self, key):
        """The Keras variable `key` (for `assign`)."""
        return self._weights_by_name[key]

    def call(self, inputs=None):
        """`{name: value}` of every weight."""
        return {k: w.value for k, w in self._weights_by_name.items()}
