"""Conditional toy data `(y, c)` for conditional density estimation p(y | c).

Each generator returns `(y, c)`: float32 targets `[n, D]` and conditions
`[n, C]`, drawn jointly (`c` from its own distribution, then `y ~ p(y | c)`),
so that a flow trained on the pairs can be checked against the known
conditional. `load("rotated_moons")` / `load("bimodal_sine")` wrap them in a
`Split` whose `conditions` hold the condition of every row.
"""

import numpy as np

from tfp_flows.datasets.toy import _jitter, _setup, two_moons


def rotated_moons(num_samples, seed=0, noise=0.1, condition=None):
    """Two moons rotated by an angle given by the condition.

    `c ~ U(-1, 1)` (one number), `y = R(c pi / 2) m` with `m` a two-moons sample
    (`toy.two_moons`, centred at the origin): the conditional density is the
    two-moons density rotated by `c * 90` degrees. With `condition` (a number)
    every sample has `c = condition`: draws of `p(y | c)` itself.

    Returns:
      `(y [n, 2], c [n, 1])`, float32.
    """
    n, rng, noise = _setup(num_samples, seed, noise)
    moons = two_moons(n, seed=int(rng.integers(2**31)), noise=noise).astype(np.float64)
    moons -= np.array([0.0, 0.3])  # centre the moons' bounding box near the origin
    c = rng.uniform(-1.0, 1.0, n) if condition is None else np.full(n, float(condition))
    angle = c * np.pi / 2
    cos, sin = np.cos(angle), np.sin(angle)
    y = np.stack([cos * moons[:, 0] - sin * moons[:, 1],
                  sin * moons[:, 0] + cos * moons[:, 1]], axis=1)
    return y.astype(np.float32), c[:, None].astype(np.float32)


def bimodal_sine(num_samples, seed=0, noise=0.1):
    """A scalar target with two branches: `y = sin(c) +- 0.6 + noise`.

    `c ~ U(-3, 3)` (one number); given `c`, `y` is an equal mixture of
    `N(sin(c) + 0.6, noise^2)` and `N(sin(c) - 0.6, noise^2)`: a conditional
    density a Gaussian regression cannot fit.

    Returns:
      `(y [n, 1], c [n, 1])`, float32.
    """
    n, rng, noise = _setup(num_samples, seed, noise)
    c = rng.uniform(-3.0, 3.0, n)
    branch = np.where(rng.random(n) < 0.5, 0.6, -0.6)
    y = _jitter((np.sin(c) + branch)[:, None], rng, noise)
    return y, c[:, None].astype(np.float32)


def conditional_log_prob(name, y, c, noise=0.1):
    """The exact `log p(y | c)` of `bimodal_sine` (`name="bimodal_sine"`), per row."""
    if name != "bimodal_sine":
        raise ValueError(f"`name` must be 'bimodal_sine' (the one with a closed form); "
                         f"got {name!r}.")
    y, c = np.asarray(y, np.float64)[:, 0], np.asarray(c, np.float64)[:, 0]
    def normal(mean):
        return np.exp(-0.5 * ((y - mean) / noise) ** 2) / (noise * np.sqrt(2 * np.pi))
    return np.log(0.5 * normal(np.sin(c) + 0.6) + 0.5 * normal(np.sin(c) - 0.6))


CONDITIONAL_DATASETS = {"rotated_moons": rotated_moons, "bimodal_sine": bimodal_sine}
