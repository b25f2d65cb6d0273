"""Invertible linear map in LU form (Glow's 1x1 convolution for vectors)."""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.internal import keras_owned, validation
from tfp_flows.nets.mlp import Parameters

tfb = tfp.bijectors


def _random_lu(event_size, seed):
    """LU factors of a random rotation, as `tfb.ScaleMatvecLU` stores them."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((event_size, event_size)))
    lower_upper, perm = tf.linalg.lu(tf.constant(q))
    return lower_upper.numpy(), perm.numpy()


class LULinear(tfb.Bijector):
    """`y = W x` with `W = P L U` (`tfb.ScaleMatvecLU`), weights owned by Keras.

    Initialised at a random rotation (`|det W| = 1`), as in Glow.
    `log|det J_forward| = sum(log|diag U|)`, broadcast to the batch shape.
    """

    def __init__(self, event_size, seed=0, dtype=tf.float32, validate_args=False,
                 name="lu_linear"):
        parameters = dict(locals())
        self._event_size = validation.positive_int(event_size, "event_size")
        dtype = validation.float_dtype(dtype)
        with tf.name_scope(name) as name:
            lower_upper, perm = _random_lu(self._event_size, seed)
            self._params = Parameters(
                {"lower_upper": ((event_size, event_size),
                                 lambda shape, dtype=None: tf.constant(lower_upper, dtype))},
                dtype=dtype.name, name=name.strip("/").replace("/", "_") + "_params")
            parameters["params"] = self._params
            self._lu = tfb.ScaleMatvecLU(self._params.variable("lower_upper"),
                                         permutation=tf.constant(perm),
                                         validate_args=validate_args)
            super().__init__(forward_min_event_ndims=1, dtype=dtype, validate_args=validate_args,
                             parameters=parameters, name=name)
            keras_owned.own_keras_layers(self, self._params)

    @classmethod
    def _parameter_properties(cls, dtype):
        return {}

    def _forward(self, x):
        return self._lu.forward(x)

    def _inverse(self, y):
        return self._lu.inverse(y)

    def _forward_log_det_jacobian(self, x):
        return tf.broadcast_to(self._lu.forward_log_det_jacobian(x, event_ndims=1),
                               tf.shape(x)[:-1])

    def _inverse_log_det_jacobian(self, y):
        return -self._forward_log_det_jacobian(y)
