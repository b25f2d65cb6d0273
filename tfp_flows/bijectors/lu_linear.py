"""Invertible linear map in LU form (Glow's 1x1 convolution for vectors)."""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.bijectors.base import KerasBijector, keras_layer_name
from tfp_flows.internal import validation
from tfp_flows.nets.mlp import Parameters, dense

tfb = tfp.bijectors


def _random_lu(event_size, seed):
    """LU factors of a random rotation, as `tfb.ScaleMatvecLU` stores them."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((event_size, event_size)))
    lower_upper, perm = tf.linalg.lu(tf.constant(q))
    return lower_upper.numpy(), perm.numpy()


def lu_parameters(event_size, seed, dtype, name, validate_args=False, extra_specs=None):
    """A `Parameters` layer with a square `lower_upper` weight, and the LU map that reads it.

    `lower_upper` starts at the LU factors of a random rotation (numpy `seed`);
    the returned `tfb.ScaleMatvecLU` holds its `tf.Variable` (so gradients reach
    the Keras weight) and the fixed permutation. `extra_specs` adds further
    weights to the same layer, after `lower_upper`, as `Parameters` specs.

    Returns:
      `(params, lu)`: the built `nets.Parameters` layer and the bijector.
    """
    lower_upper, perm = _random_lu(event_size, seed)
    specs = {"lower_upper": ((event_size, event_size),
                             lambda shape, dtype=None: tf.constant(lower_upper, dtype))}
    specs.update(extra_specs or {})
    params = Parameters(specs, dtype=tf.as_dtype(dtype).name, name=name)
    lu = tfb.ScaleMatvecLU(params.variable("lower_upper"), permutation=tf.constant(perm),
                           validate_args=validate_args)
    return params, lu


def lu_matrices(lu):
    """`(W, W^-1)` of a `tfb.ScaleMatvecLU`, each one `[D, D]` matrix.

    TFP's `ScaleMatvecLU` maps a batch with a matrix-vector product and a
    triangular solve per point: the `[D, D]` factors are broadcast to the batch
    (`[batch, D, D]`), the permutation is a `gather_nd` (a scatter in the
    gradient), and the gradient with respect to the factors is summed over that
    broadcast batch. Here the inverse matrix is solved once, `W^-1 = U^-1 L^-1 P^T`
    (`P^T` as rows of the identity: exact), and both directions are one matrix
    product with the batch (`x W^T`, `y W^-T`). The same maps, rounded differently
    (sums in another order; the inverse is a solve against the identity, then a
    product; as accurate, docs/performance.md).
    """
    lower_upper = tf.convert_to_tensor(lu.lower_upper)
    perm = tf.convert_to_tensor(lu.permutation)
    d = tf.shape(lower_upper)[-1]
    eye = tf.eye(d, dtype=lower_upper.dtype)
    lower = tf.linalg.set_diag(tf.linalg.band_part(lower_upper, -1, 0),
                               tf.ones([d], lower_upper.dtype))
    upper = tf.linalg.band_part(lower_upper, 0, -1)
    inverse = tf.linalg.triangular_solve(
        upper, tf.linalg.triangular_solve(lower, tf.gather(eye, perm)), lower=False)
    return tf.gather(tf.matmul(lower, upper), tf.argsort(perm)), inverse


class LULinear(KerasBijector):
    """`y = W x` with `W = P L U` (`tfb.ScaleMatvecLU`), weights owned by Keras.

    Initialised at a random rotation (`|det W| = 1`), as in Glow.
    `log|det J_forward| = sum(log|diag U|)`, broadcast to the batch shape.
    """

    def __init__(self, event_size, seed=0, dtype=tf.float32, validate_args=False,
                 name="lu_linear"):
        parameters = dict(locals())
        event_size = validation.positive_int(event_size, "event_size")
        dtype = validation.float_dtype(dtype)

        def make_layers(scope):
            self._params, self._lu = lu_parameters(
                event_size, seed, dtype, keras_layer_name(scope, "_params"), validate_args)
            return {"params": self._params}

        super().__init__(parameters, make_layers, event_size, dtype,
                         validate_args=validate_args, name=name)

    def _forward(self, x):
        return dense(x, lu_matrices(self._lu)[0], transpose_kernel=True)

    def _inverse(self, y):
        return dense(y, lu_matrices(self._lu)[1], transpose_kernel=True)

    def _forward_log_det_jacobian(self, x):
        return tf.broadcast_to(self._lu.forward_log_det_jacobian(x, event_ndims=1),
                               tf.shape(x)[:-1])

    def _inverse_log_det_jacobian(self, y):
        return -self._forward_log_det_jacobian(y)
