"""Callables that turn Keras 3 networks into TFP conditioners.

TFP's `tfb.RealNVP` and `tfb.MaskedAutoregressiveFlow` take a plain callable.
These `tf.Module`s hold the Keras layer (so `find_keras_layers` finds it and
`trainable_variables` sees its weights) and map its output to what TFP expects.
The log-scale is soft-clamped, `c * tanh(s / c)` (`internal.math.soft_clamp`), so
`exp(s)` cannot overflow during training.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.bijectors.funnel_maps import spline_parameters
from tfp_flows.internal import keras_owned
from tfp_flows.internal.config import Configurable
from tfp_flows.internal.math import soft_clamp
from tfp_flows.nets.made import MADE
from tfp_flows.nets.mlp import MLP

tfb = tfp.bijectors


class AffineCouplingConditioner(Configurable, tf.Module):
    """`shift_and_log_scale_fn` for `tfb.RealNVP` from an MLP.

    Call signature is TFP's: `fn(x_masked, output_units, conditional_input=None)`.
    """

    def __init__(self, num_masked, output_units, hidden_units=(64, 64), activation="relu",
                 residual=False, conditional_size=0, log_scale_bound=3.0, dtype="float32",
                 name="affine_conditioner"):
        super().__init__(name=name)
        self._bound = log_scale_bound
        self._output_units = output_units
        self.net = keras_owned.build_layer(
            MLP(2 * output_units, hidden_units, activation, residual, conditional_size,
                dtype=dtype), (None, num_masked))
        keras_owned.own_keras_layers(self, self.net)

    def __call__(self, x, output_units, conditional_input=None):
        params = self.net(x, conditional_input=conditional_input)
        shift, log_scale = tf.split(params, 2, axis=-1)
        return shift, soft_clamp(log_scale, self._bound)


class SplineCouplingConditioner(Configurable, tf.Module):
    """`bijector_fn` for `tfb.RealNVP` returning a `tfb.RationalQuadraticSpline`.

    The MLP emits `3K - 1` numbers per transformed dimension: K bin widths, K
    bin heights (softmax, scaled to the interval `[-bound, bound]`) and K - 1
    interior knot slopes (softplus). Outside the interval the spline is the
    identity (Durkan et al., 2019). A zero MLP output gives equal bins and unit
    slopes: the identity.
    """

    def __init__(self, num_masked, output_units, num_bins=8, bound=4.0, hidden_units=(64, 64),
                 activation="relu", residual=False, conditional_size=0, dtype="float32",
                 name="spline_conditioner"):
        super().__init__(name=name)
        self._num_bins = num_bins
        self._bound = bound
        self._output_units = output_units
        self.net = keras_owned.build_layer(
            MLP(output_units * (3 * num_bins - 1), hidden_units, activation, residual,
                conditional_size, dtype=dtype), (None, num_masked))
        keras_owned.own_keras_layers(self, self.net)

    def __call__(self, x, output_units, conditional_input=None, **kwargs):
        params = self.net(x, conditional_input=conditional_input)
        shape = tf.concat([tf.shape(params)[:-1], [self._output_units, 3 * self._num_bins - 1]], 0)
        params = tf.reshape(params, shape)
        widths, heights, slopes = spline_parameters(params, self._num_bins, self._bound)
        return tfb.RationalQuadraticSpline(widths, heights, slopes, range_min=-self._bound)


class MADEConditioner(Configurable, tf.Module):
    """`shift_and_log_scale_fn` for `tfb.MaskedAutoregressiveFlow` from a Keras 3 MADE."""

    def __init__(self, event_size, hidden_units=(64, 64), activation="relu", conditional_size=0,
                 log_scale_bound=3.0, dtype="float32", name="made_conditioner"):
        super().__init__(name=name)
        self._bound = log_scale_bound
        self.net = keras_owned.build_layer(
            MADE(event_size, 2, hidden_units, activation, conditional_size, dtype=dtype),
            (None, event_size))
        keras_owned.own_keras_layers(self, self.net)

    def __call__(self, x, conditional_input=None):
        params = self.net(x, conditional_input=conditional_input)
        return params[..., 0], soft_clamp(params[..., 1], self._bound)
