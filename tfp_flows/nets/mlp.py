"""Dense conditioner networks and a parameter holder, written for any input rank.

Keras' `Dense` insists on rank >= 2 inputs; bijectors must accept inputs of
shape `[..., D]` including `[D]`, so these layers contract the last axis
themselves, with `dense`: one rank-2 matmul whatever the input's rank.
"""

import keras
import numpy as np
import tensorflow as tf

from tfp_flows.internal import validation
from tfp_flows.nets import products

_ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "silu", "softplus", "sigmoid")


def dense(x, kernel, transpose_kernel=False):
    """`x @ kernel` over the last axis of `x` (`[..., I] x [I, J] -> [..., J]`; with
    `transpose_kernel`, `kernel` is `[J, I]`), as one rank-2 product.

    Not `tf.einsum("...i,ij->...j")`: its gradient with respect to the kernel is
    formed per row, as the outer products `x_b^T g_b` (a `[batch, I, J]` tensor), and
    then summed over the batch; XLA on CPU runs that as an elementwise loop instead
    of a matrix product. Measured on a 5-layer RealNVP, 64-D, batch 512: the einsum
    step took 2.5 times a hand-written one (docs/performance.md). A rank-2 input
    (the usual case) is not reshaped. The product is `nets.products.matmul` (the same
    values; a thin kernel's gradients in the forms XLA:CPU runs fastest), or
    `tf.matmul` with `transpose_kernel`.
    """
    flat = x if x.shape.rank == 2 else tf.reshape(x, [-1, tf.shape(x)[-1]])
    if transpose_kernel:
        out = tf.matmul(flat, kernel, transpose_b=True)
    else:
        # Thin kernels' gradients by hand (RealNVP 2-D's step 0.65-0.72x); not the chunked
        # batch contraction of wide kernels, which helps FFJORD's field but made MAF 64-D's
        # step 1.18x slower (benchmarks/revision_ab.py).
        out = products.matmul(flat, kernel, wide=False)
    if x.shape.rank == 2:
        return out
    width = kernel.shape[0] if transpose_kernel else kernel.shape[-1]
    return tf.reshape(out, tf.concat([tf.shape(x)[:-1], [width]], 0))


class PackedWeights:
    """Tensors of several shapes (a network's kernels and biases) held in one flat weight.

    A step's cost on CPU grows with the number of variables it reads and updates,
    not only with their size: XLA's launch reads and writes every captured variable
    (and Keras' Adam keeps two slots per variable), about 4 us each. A 5-layer
    RealNVP with two hidden layers per network had 30 parameter variables (97
    captured with Adam's slots); with one weight per network it has 5. The pieces
    are slices of the flat value (`tf.split`), laid out in the order given, so a
    network saved with one weight per tensor loads unchanged (`load_into`).
    """

    def __init__(self, layer, shapes, initializers, name="packed_weights"):
        self.shapes = [tuple(int(d) for d in shape) for shape in shapes]
        self.sizes = [int(np.prod(shape)) for shape in self.shapes]
        inits = [keras.initializers.get(init) for init in initializers]

        def initializer(shape, dtype=None):
            return keras.ops.concatenate([keras.ops.reshape(init(piece, dtype=dtype), [-1])
                                          for init, piece in zip(inits, self.shapes,
                                                                 strict=True)])

        self.weight = layer.add_weight(shape=(sum(self.sizes),), initializer=initializer,
                                       name=name)

    def unpack(self):
        """The tensors, in the order of `shapes` (differentiable slices of the weight)."""
        parts = tf.split(self.weight.value, self.sizes)
        return [tf.reshape(part, shape) for part, shape in zip(parts, self.shapes, strict=True)]

    def assign_pieces(self, values):
        """Assigns the tensors (arrays in the order of `shapes`); returns False, assigning
        nothing, if `values` are not that many arrays of those shapes."""
        values = [np.asarray(v) for v in values]
        if [v.shape for v in values] != self.shapes:
            return False
        self.weight.assign(np.concatenate([v.ravel() for v in values]))
        return True

    def load_into(self, store):
        """Loads a Keras variable store saved with one variable per tensor (the layout
        before packing); returns False if `store` holds something else."""
        if len(store.keys()) != len(self.shapes):
            return False
        return self.assign_pieces([store[str(i)] for i in range(len(self.shapes))])


class PackedDense(keras.layers.Layer):
    """Base of the dense networks (`MLP`, `MADE`): kernels and biases in one weight.

    `kernels` and `biases` are the pieces (tensors); `set_weights` takes the packed
    vector or, as before packing, the list `[kernel_0, bias_0, kernel_1, ...]`; a
    model saved with one variable per kernel and bias loads unchanged (the
    optimizer's moments of such a save restart: Keras skips them with a warning).
    """

    def _pack(self, shapes, initializers):
        self._packed = PackedWeights(self, shapes, initializers)

    @property
    def kernels(self):
        """The layers' kernels (tensors: slices of the packed weight)."""
        return self._packed.unpack()[::2]

    @property
    def biases(self):
        """The layers' biases (tensors: slices of the packed weight)."""
        return self._packed.unpack()[1::2]

    def set_weights(self, weights):
        if not (self.built and self._packed.assign_pieces(weights)):
            super().set_weights(weights)

    def load_own_variables(self, store):
        if not self._packed.load_into(store):
            super().load_own_variables(store)


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
class MLP(PackedDense):
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
        """Creates the kernels and biases (the output layer zero-initialised if asked), in
        one packed weight (`PackedWeights`)."""
        fan_in = int(input_shape[-1]) + self.conditional_size
        widths = (*self.hidden_units, self.output_units)
        shapes, inits = [], []
        for i, width in enumerate(widths):
            last = i == len(widths) - 1
            shapes += [(fan_in, width), (width,)]
            inits += ["zeros" if (last and self.zero_init_output) else "glorot_uniform", "zeros"]
            fan_in = width
        self._pack(shapes, inits)

    def call(self, inputs, conditional_input=None):
        """`MLP([inputs, conditional_input])`, `[..., output_units]`."""
        check_condition(self, conditional_input)
        h = concat_condition(inputs, conditional_input)
        num_hidden = len(self.hidden_units)
        pieces = self._packed.unpack()
        for i, (kernel, bias) in enumerate(zip(pieces[::2], pieces[1::2], strict=True)):
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
