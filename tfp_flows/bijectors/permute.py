"""Fixed permutations between coupling layers.

`Permute` is `tfb.Permute` (same arguments, same maps) with a cheaper graph for a
permutation known when the bijector is built, on the last axis: TFP's inverts
the permutation at run time (`tf.math.invert_permutation`, a scatter) and
differentiates `tf.gather` into a scatter (`UnsortedSegmentSum`), which XLA on
CPU runs as serial loops; a flow's gradient passes through every permutation
(measured on a 5-layer RealNVP, two moons: 9 scatters in the compiled gradient).
Here the inverse is computed once in NumPy, a reversal is `tf.reverse`, and the
gradient of a gather by `p` is the gather by `p`'s inverse: the same numbers.
"""

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.internal import validation

tfb = tfp.bijectors


def _permute_last_axis(x, permutation, inverse):
    """`x[..., permutation]`; its gradient is `dy[..., inverse]` (no scatter)."""
    if np.array_equal(permutation, np.arange(permutation.size)[::-1]):
        return tf.reverse(x, axis=[-1])

    @tf.custom_gradient
    def gather(x):
        def grad(dy):
            return tf.gather(dy, inverse, axis=-1)
        return tf.gather(x, permutation, axis=-1), grad

    return gather(x)


class Permute(tfb.Permute):
    """`tfb.Permute` whose graph has no scatter when the permutation is static and
    `axis=-1` (see the module docstring); otherwise TFP's."""

    def __init__(self, permutation, axis=-1, validate_args=False, name="permute"):
        super().__init__(permutation, axis=axis, validate_args=validate_args, name=name)
        static = tf.get_static_value(self.permutation)
        last = tf.get_static_value(self.axis)
        self._static = None
        if static is not None and last is not None and int(last) == -1:
            static = np.asarray(static, dtype=np.int32)
            self._static = (static, np.argsort(static).astype(np.int32))

    def _forward(self, x):
        if self._static is None:
            return super()._forward(x)
        return _permute_last_axis(x, *self._static)

    def _inverse(self, y):
        if self._static is None:
            return super()._inverse(y)
        permutation, inverse = self._static
        return _permute_last_axis(y, inverse, permutation)


def random_permutation(event_size, seed):
    """A fixed random `Permute` drawn with a NumPy seed."""
    perm = np.random.default_rng(seed).permutation(event_size)
    return Permute(perm.astype(np.int32), name="random_permute")


def reverse_permutation(event_size):
    """`Permute` reversing the last axis (`[D-1, ..., 0]`), named "reverse"."""
    return Permute(np.arange(event_size - 1, -1, -1, dtype=np.int32), name="reverse")


def block_permutations(event_size, num_blocks, seed=0):
    """The scheme of Ferumal flows (English et al., 2024): per block, a random permutation
    before the first coupling and a reversal before the second.

    Returns a list of `2 * num_blocks` `Permute` bijectors in application
    order (density direction).
    """
    event_size = validation.positive_int(event_size, "event_size")
    num_blocks = validation.positive_int(num_blocks, "num_blocks")
    perms = []
    for i in range(num_blocks):
        perms += [random_permutation(event_size, seed + i), reverse_permutation(event_size)]
    return perms
