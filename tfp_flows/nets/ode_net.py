"""Time-conditioned vector field `f(t, z[, c]) -> dz/dt` for continuous-time flows (FFJORD)."""

import keras
import tensorflow as tf

from tfp_flows.internal import validation
from tfp_flows.nets import products


def _gelu(a):
    # Exact GELU (Keras' default), a * Phi(a), with full-precision constants.
    return a * 0.5 * (1.0 + tf.math.erf(a * 0.7071067811865476))


def _gelu_slope(a, _):
    # d/da [a Phi(a)] = Phi(a) + a phi(a).
    return (0.5 * (1.0 + tf.math.erf(a * 0.7071067811865476))
            + a * 0.3989422804014327 * tf.exp(-0.5 * tf.square(a)))


# name -> (activation, (a, activation(a)) -> activation'(a)); the slope feeds `jvp`.
_ACTIVATIONS = {
    "tanh": (tf.tanh, lambda a, y: 1.0 - tf.square(y)),
    "softplus": (tf.nn.softplus, lambda a, y: tf.sigmoid(a)),
    "elu": (tf.nn.elu, lambda a, y: tf.where(a > 0, tf.ones_like(a), y + 1.0)),
    "silu": (tf.nn.silu, lambda a, y: tf.sigmoid(a) * (1.0 + a - y)),
    "gelu": (_gelu, _gelu_slope),
    "sigmoid": (tf.sigmoid, lambda a, y: y * (1.0 - y)),
}


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
        self._act, self._slope = _ACTIVATIONS[self.activation]
        self.build((None, self.event_size))

    def build(self, input_shape):
        """Creates the time-conditioned layers' weights."""
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

    def _folded_weights(self, t, dtype):
        """Per layer `(kernel, bias)` with the time gate and shift folded in.

        `(h W + b) * gate + shift * t == h (W * gate) + (b * gate + shift * t)`:
        rank-2 matmuls, no einsum or dynamic-shape broadcasting, whose gradients
        XLA cannot compile inside a while loop when the batch size is unknown at
        trace time (Keras `fit`).
        """
        t = tf.cast(t, dtype)
        for kernel, bias, gate_w, gate_b, shift in self._blocks:
            gate = tf.sigmoid(gate_w * t + gate_b)
            yield kernel * gate, bias * gate + shift * t

    def _inputs(self, z, conditional_input):
        h = z if conditional_input is None else tf.concat(
            [z, tf.cast(conditional_input, z.dtype)], axis=-1)
        return tf.reshape(h, [-1, self.event_size + self.conditional_size])

    def _output(self, h, z):
        return tf.reshape(h, tf.concat([tf.shape(z)[:-1], [self.event_size]], 0))

    def call(self, t, z, conditional_input=None):
        """The vector field `f(t, z [, c])`, `[..., event_size]`."""
        h = self._inputs(z, conditional_input)
        last = len(self._blocks) - 1
        for i, (kernel, bias) in enumerate(self._folded_weights(t, h.dtype)):
            h = tf.nn.bias_add(products.matmul(h, kernel), bias)
            if i < last:
                h = self._act(h)
        return self._output(h, z)

    def jvp(self, t, z, tangents, conditional_input=None):
        """The field and its Jacobian-vector products, in one forward pass.

        Forward-mode differentiation by hand: with `h_{i+1} = act(h_i W_i + b_i)`,
        the tangent obeys `dh_{i+1} = act'(a_i) * (dh_i W_i)`, started from the
        `K` tangents of `z` (the conditional input has none). Costs `1 + K`
        forward passes and no backward pass, against roughly three forward passes
        per probe for a vector-Jacobian product; `FFJORD` uses it for the trace.

        Args:
          t: scalar time.
          z: `[..., D]`.
          tangents: `[K, ..., D]` with a static `K`.
          conditional_input: `[..., C]` or None.

        Returns:
          `(f, jv)`: `f(t, z)` of shape `[..., D]` and `jv[k] = (df/dz) tangents[k]`
          of shape `[K, ..., D]`.
        """
        num = int(tangents.shape[0])
        h = self._inputs(z, conditional_input)
        dh = tf.reshape(tangents, [-1, self.event_size])  # [K * N, D]
        last = len(self._blocks) - 1
        for i, (kernel, bias) in enumerate(self._folded_weights(t, h.dtype)):
            # The conditional input's tangent is zero: only z's rows of the first kernel.
            a = tf.nn.bias_add(products.matmul(h, kernel), bias)
            da = products.matmul(dh, kernel[:self.event_size] if i == 0 else kernel)
            if i < last:
                h = self._act(a)
                # Static tiling (not broadcasting) keeps the gradient XLA-compilable in loops.
                dh = da * tf.tile(self._slope(a, h), [num, 1])
        jv = tf.reshape(da, tf.concat([[num], tf.shape(z)[:-1], [self.event_size]], 0))
        return self._output(a, z), jv

    def exact_trace(self, t, z, conditional_input=None):
        """The field and the exact trace of its Jacobian `tr(df/dz)`, in one pass.

        With at most two hidden layers the trace has a closed form whose cost does
        not grow with `D`. Writing `W_i` for the time-folded kernels (`W_0`
        restricted to `z`'s rows), `s_i = act'(a_i)` for the hidden slopes,

            df_d/dz_k = sum_{i,j} W_0[k,i] s_1[i] W_1[i,j] s_2[j] W_2[j,d],
            tr(df/dz) = sum_{i,j} s_1[i] s_2[j] W_1[i,j] (W_2 W_0)[j,i]
                      = sum_j (s_1 Q)[j] s_2[j],    Q = W_1 * (W_2 W_0)^T,

        one `[N, H_1] x [H_1, H_2]` product per evaluation instead of `D` tangent
        passes (`jvp` with the unit vectors); with one hidden layer
        `tr = s_1 . diag(W_1 W_0)`, with none `tr = tr(W_0)`. Deeper nets use `jvp`.

        Args:
          t: scalar time.
          z: `[..., D]`.
          conditional_input: `[..., C]` or None.

        Returns:
          `(f, trace)`: `f(t, z)` of shape `[..., D]` and the trace, shape `[...]`.
        """
        depth = len(self.hidden_units)
        if depth > 2:
            eye = tf.eye(self.event_size, dtype=z.dtype)
            tangents = tf.broadcast_to(tf.reshape(eye, [self.event_size] + [1] * (
                z.shape.rank - 1) + [self.event_size]), tf.concat([[self.event_size],
                                                                   tf.shape(z)], 0))
            tangents.set_shape([self.event_size] + z.shape.as_list())
            f, jv = self.jvp(t, z, tangents, conditional_input)
            return f, tf.reduce_sum(jv * tangents, axis=[0, -1])
        h = self._inputs(z, conditional_input)
        weights = list(self._folded_weights(t, h.dtype))
        first = weights[0][0][:self.event_size]  # W_0 on z's rows
        slopes = []
        for i, (kernel, bias) in enumerate(weights):
            a = tf.nn.bias_add(products.matmul(h, kernel), bias)
            if i < depth:
                h = self._act(a)
                slopes.append(self._slope(a, h))
        if depth == 0:
            trace = tf.linalg.trace(first) * tf.ones_like(a[:, 0])
        elif depth == 1:
            diag = tf.reduce_sum(tf.transpose(first) * weights[1][0], axis=1)  # (W_1 W_0)_ii
            trace = tf.linalg.matvec(slopes[0], diag)
        else:
            product = (products.thin_product if self.event_size <= products.THIN else tf.matmul)(
                weights[2][0], first)  # W_2 W_0
            q = weights[1][0] * tf.transpose(product)
            trace = tf.reduce_sum(products.matmul(slopes[0], q) * slopes[1], axis=-1)
        return self._output(a, z), tf.reshape(trace, tf.shape(z)[:-1])

    def get_config(self):
        return {**super().get_config(), "event_size": self.event_size,
                "hidden_units": list(self.hidden_units), "activation": self.activation,
                "conditional_size": self.conditional_size,
                "zero_init_output": self.zero_init_output}
