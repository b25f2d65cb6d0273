"""MADE: masked autoencoder for distribution estimation (Germain et al., 2015), Keras 3.

`tfb.AutoregressiveNetwork` is a Keras 2 layer; this is the Keras 3 version
used by the MAF baseline. Output `i` depends only on inputs `< i` (in the
given order), so `tfb.MaskedAutoregressiveFlow` can use it.
"""

import keras
import numpy as np
import tensorflow as tf

from tfp_flows.internal import validation
from tfp_flows.nets.mlp import PackedDense, check_condition, concat_condition, dense


def made_degrees(event_size, hidden_units, input_order="left-to-right"):
    """Degrees of the input and hidden units (input degrees are 1..D)."""
    if input_order == "left-to-right":
        inputs = np.arange(1, event_size + 1)
    elif input_order == "right-to-left":
        inputs = np.arange(event_size, 0, -1)
    else:
        raise ValueError("`input_order` must be 'left-to-right' or 'right-to-left'; "
                         f"got {input_order!r}.")
    degrees = [inputs]
    for width in hidden_units:
        # Cycle through 1..D-1 so every degree is represented (deterministic).
        low = 1 if event_size > 1 else 0
        degrees.append(low + np.arange(width) % max(event_size - 1, 1))
    return degrees


def made_masks(degrees):
    """Masks for the hidden layers and the output layer, from `made_degrees`."""
    pairs = zip(degrees[:-1], degrees[1:], strict=True)
    masks = [(d_in[:, None] <= d_out[None, :]) for d_in, d_out in pairs]
    # Output unit for dimension i (degree d_i) sees hidden units of degree < d_i.
    masks.append(degrees[-1][:, None] < degrees[0][None, :])
    return [m.astype(np.float32) for m in masks]


@keras.saving.register_keras_serializable(package="tfp_flows")
class MADE(PackedDense):
    """Autoregressive network `x -> params`, `params[..., i, :]` depends on `x[..., :i]`.

    Returns a tensor of shape `[..., event_size, params]`, the output layer
    zero-initialised so a MAF built from it starts at the identity. A
    conditional input (size `conditional_size`) feeds every hidden unit.
    """

    def __init__(self, event_size, params=2, hidden_units=(64, 64), activation="relu",
                 conditional_size=0, input_order="left-to-right", **kwargs):
        super().__init__(**kwargs)
        self.event_size = validation.positive_int(event_size, "event_size")
        self.params = validation.positive_int(params, "params")
        self.hidden_units = validation.int_tuple(hidden_units, "hidden_units", allow_empty=False)
        self.activation = activation
        self.conditional_size = validation.positive_int(
            conditional_size, "conditional_size", allow_zero=True)
        self.input_order = input_order
        self._masks = made_masks(made_degrees(self.event_size, self.hidden_units, input_order))
        self._act = keras.activations.get(activation)

    def build(self, input_shape=None):
        """Creates the masked kernels (output layer zero-initialised) and biases, in one
        packed weight (`nets.mlp.PackedDense`)."""
        d = self.event_size
        fan_in, shapes, inits = d, [], []
        widths = (*self.hidden_units, d * self.params)
        for i, width in enumerate(widths):
            last = i == len(widths) - 1
            extra = self.conditional_size if i == 0 else 0
            shapes += [(fan_in + extra, width), (width,)]
            inits += ["zeros" if last else "glorot_uniform", "zeros"]
            fan_in = width
        self._pack(shapes, inits)

    def call(self, inputs, conditional_input=None):
        """Outputs `[..., D, params]`; output `i` depends only on inputs before `i` in the order."""
        check_condition(self, conditional_input)
        h = inputs
        pieces = self._packed.unpack()
        kernels, biases = pieces[::2], pieces[1::2]
        for i, (kernel, bias) in enumerate(zip(kernels, biases, strict=True)):
            mask = self._masks[i]
            if i == len(kernels) - 1:
                # Repeat each output unit's mask once per parameter.
                mask = np.repeat(mask, self.params, axis=1)
            mask = tf.constant(mask, dtype=kernel.dtype)
            if i == 0 and self.conditional_size:
                mask = tf.concat([mask, tf.ones([self.conditional_size, mask.shape[1]],
                                                kernel.dtype)], axis=0)
                h = concat_condition(h, conditional_input)
            h = dense(h, kernel * mask) + bias
            if i < len(kernels) - 1:
                h = self._act(h)
        shape = tf.concat([tf.shape(h)[:-1], [self.event_size, self.params]], 0)
        return tf.reshape(h, shape)

    def get_config(self):
        return {**super().get_config(), "event_size": self.event_size, "params": self.params,
                "hidden_units": list(self.hidden_units), "activation": self.activation,
                "conditional_size": self.conditional_size, "input_order": self.input_order}
