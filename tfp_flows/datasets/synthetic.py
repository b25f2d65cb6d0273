"""Synthetic densities in any dimension.

`gaussian_power` is the synthetic benchmark of S. de Boer, "Marginalizing
Flows", BSc thesis, Radboud University Nijmegen, 2020 (Sec. 2.2.1, Table 2):
standard-normal samples raised elementwise to an integer power psi.
"""

import numbers

import numpy as np

from tfp_flows.datasets.toy import _check_positive_int, _check_seed

__all__ = ["gaussian_power"]


def gaussian_power(num_samples, dim, psi, seed=0):
    """Samples ``x = z ** psi`` elementwise, with ``z ~ N(0, I_dim)``.

    Density: the coordinates are i.i.d. For ``psi = 1`` this is the standard
    normal; for even ``psi`` the map ``z -> z ** psi`` is two-to-one, so the sign
    of ``z`` is lost and every coordinate is non-negative (``psi = 2`` gives a
    chi-squared with one degree of freedom per coordinate); for odd
    ``psi >= 3`` the map is an invertible but non-linear bijection with a
    heavy-tailed, sharply peaked result. De Boer uses ``psi in {1, 2, 3}`` and
    ``dim in {1, 2, 3}``.

    Args:
      num_samples: Positive int, number of samples.
      dim: Positive int, the dimension D.
      psi: Positive int, the elementwise power.
      seed: Non-negative int seed for ``np.random.default_rng``.

    Returns:
      float32 array of shape ``[num_samples, dim]``.

    Raises:
      ValueError: If an argument is not a positive integer (seed: non-negative).
    """
    n = _check_positive_int("num_samples", num_samples)
    dim = _check_positive_int("dim", dim)
    if isinstance(psi, bool) or not isinstance(psi, numbers.Integral) or psi < 1:
        raise ValueError(f"`psi` must be a positive integer power; got {psi!r}.")
    rng = np.random.default_rng(_check_seed(seed))
    # Power in float64, then cast: z**3 of large z stays accurate before rounding.
    return (rng.standard_normal((n, dim)) ** int(psi)).astype(np.float32)
