"""Fixed permutations between coupling layers."""

import numpy as np
import tensorflow_probability as tfp

from tfp_flows.internal import validation

tfb = tfp.bijectors


def random_permutation(event_size, seed):
    """A fixed random `tfb.Permute` drawn with a NumPy seed."""
    perm = np.random.default_rng(seed).permutation(event_size)
    return tfb.Permute(perm.astype(np.int32), name="random_permute")


def reverse_permutation(event_size):
    """`tfb.Permute` reversing the last axis (`[D-1, ..., 0]`), named "reverse"."""
    return tfb.Permute(np.arange(event_size - 1, -1, -1, dtype=np.int32), name="reverse")


def block_permutations(event_size, num_blocks, seed=0):
    """The scheme of Ferumal flows (English et al., 2024): per block, a random permutation
    before the first coupling and a reversal before the second.

    Returns a list of `2 * num_blocks` `tfb.Permute` bijectors in application
    order (density direction).
    """
    event_size = validation.positive_int(event_size, "event_size")
    num_blocks = validation.positive_int(num_blocks, "num_blocks")
    perms = []
    for i in range(num_blocks):
        perms += [random_permutation(event_size, seed + i), reverse_permutation(event_size)]
    return perms
