"""Two-dimensional toy densities for flow experiments.

Each generator has the signature ``fn(num_samples, seed=0, noise=...)``
(`num_samples` a positive int, `seed` a non-negative int seed of
``np.random.default_rng``, `noise` a non-negative std whose meaning each
generator states) and returns a ``float32`` array of shape
``[num_samples, 2]`` drawn i.i.d. from a fixed density, scaled so that almost
all mass lies in ``[-4, 4]^2``.
Randomness comes only from ``np.random.default_rng(seed)``: the same seed
gives the same array, and no global RNG state is read or changed.

Most of these follow the toy data of FFJORD (Grathwohl et al., 2019,
``lib/toy_data.py``), with one change: where FFJORD splits a batch into equal
deterministic parts (one per moon, arm or ring), we draw the component of every
sample at random, so the samples are truly i.i.d. from the stated mixture.

#### References

[1]: Will Grathwohl, Ricky T. Q. Chen, Jesse Bettencourt, Ilya Sutskever,
     David Duvenaud. FFJORD: Free-form continuous dynamics for scalable
     reversible generative models. ICLR 2019.
[2]: Rob Cornish, Anthony Caterini, George Deligiannidis, Arnaud Doucet.
     Relaxing bijectivity constraints with continuously indexed normalising
     flows. ICML 2020 (the two-rectangles example of Fig. 1).
"""

import numbers

import numpy as np

__all__ = [
    "checkerboard",
    "eight_gaussians",
    "four_circles",
    "line",
    "pinwheel",
    "two_moons",
    "two_rectangles",
    "two_spirals",
]


# FFJORD's component std: 0.5 before its final division by 1.414.
_EIGHT_GAUSSIANS_STD = 0.5 / np.sqrt(2.0)


def _check_positive_int(name, value):
    """Returns `value` as an int, or raises ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
    return int(value)


def _check_seed(seed):
    """Returns `seed` as an int, or raises ValueError."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer; got {seed!r}.")
    return int(seed)


def _check_noise(noise):
    """Returns `noise` as a float, or raises ValueError."""
    if (
        isinstance(noise, bool)
        or not isinstance(noise, numbers.Real)
        or not np.isfinite(noise)
        or noise < 0
    ):
        raise ValueError(f"`noise` must be a non-negative finite number; got {noise!r}.")
    return float(noise)


def _setup(num_samples, seed, noise):
    """Validates the common arguments and returns `(n, rng, noise)`."""
    n = _check_positive_int("num_samples", num_samples)
    return n, np.random.default_rng(_check_seed(seed)), _check_noise(noise)


def _jitter(x, rng, noise):
    """Adds isotropic Gaussian noise of std `noise` and casts to float32."""
    if noise > 0:
        x = x + noise * rng.standard_normal(x.shape)
    return x.astype(np.float32)


def two_moons(num_samples, seed=0, noise=0.1):
    """Samples the two interleaving half circles ("moons").

    Density: a half circle of radius 1 (upper moon) and a shifted, flipped
    half circle (lower moon), chosen with probability 1/2 each, with uniform
    angle, plus Gaussian noise of std `noise`; then mapped by
    ``x -> 2 x + (-1, -0.2)`` as in FFJORD, so the data lies roughly in
    ``[-3, 3] x [-1.5, 2]``. Same geometry as sklearn's ``make_moons``, which
    we do not call so that this module only needs numpy.

    `noise`: Std of the Gaussian noise, before the factor-2 scaling.
    """
    n, rng, noise = _setup(num_samples, seed, noise)
    t = rng.uniform(0.0, np.pi, n)
    lower = rng.random(n) < 0.5
    x = np.where(lower, 1.0 - np.cos(t), np.cos(t))
    y = np.where(lower, 0.5 - np.sin(t), np.sin(t))
    data = np.stack([x, y], axis=1)
    if noise > 0:
        data = data + noise * rng.standard_normal(data.shape)
    return (2.0 * data + np.array([-1.0, -0.2])).astype(np.float32)


def four_circles(num_samples, seed=0, noise=0.05):
    """Samples four concentric rings ("four circles", FFJORD's "rings").

    Density: pick one of four rings with probability 1/4, radii
    ``r_k = k * r_0`` for k = 1..4 (evenly spaced, like FFJORD's rings), with a
    uniform angle, plus isotropic Gaussian noise of std `noise`. The base radius
    ``r_0 = 1 / sqrt(3.75)`` gives each coordinate unit variance (without
    noise): ``E[x_1^2] = E[r^2] / 2 = r_0^2 (1 + 4 + 9 + 16) / 8 = 1``, so the
    outer ring has radius about 2.07.

    `noise`: Std of the isotropic Gaussian noise.
    """
    n, rng, noise = _setup(num_samples, seed, noise)
    radius = rng.integers(1, 5, n) / np.sqrt(3.75)
    angle = rng.uniform(0.0, 2.0 * np.pi, n)
    data = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return _jitter(data, rng, noise)


def pinwheel(num_samples, seed=0, noise=0.1):
    """Samples FFJORD's five-armed pinwheel.

    Density: choose one of 5 arms uniformly; draw a radial coordinate
    ``1 + 0.3 z_1`` and a tangential coordinate ``noise * z_2``; rotate by the
    arm angle plus ``0.25 exp(radial)`` (which curls the arm); scale by 2.

    `noise`: Tangential std of each arm (FFJORD uses 0.1).
    """
    n, rng, noise = _setup(num_samples, seed, noise)
    num_arms, radial_std, rate = 5, 0.3, 0.25
    arm = rng.integers(0, num_arms, n)
    features = rng.standard_normal((n, 2)) * np.array([radial_std, noise])
    features[:, 0] += 1.0
    angle = 2.0 * np.pi * arm / num_arms + rate * np.exp(features[:, 0])
    cos, sin = np.cos(angle), np.sin(angle)
    # Row-vector times rotation matrix [[cos, -sin], [sin, cos]], as in FFJORD.
    x = features[:, 0] * cos + features[:, 1] * sin
    y = -features[:, 0] * sin + features[:, 1] * cos
    return (2.0 * np.stack([x, y], axis=1)).astype(np.float32)


def line(num_samples, seed=0, noise=0.01):
    """Samples points on the diagonal line ``y = x`` (FFJORD's "line").

    Density: ``t ~ Uniform[-2.5, 2.5]``, ``x = (t, t)`` plus isotropic Gaussian
    noise of std `noise`. With ``noise=0`` this is FFJORD's degenerate "line"
    (used by the Ferumal-flows toy experiments), whose density is singular.

    `noise`: Std of the isotropic Gaussian noise (0 for an exact line).
    """
    n, rng, noise = _setup(num_samples, seed, noise)
    t = rng.uniform(-2.5, 2.5, n)
    return _jitter(np.stack([t, t], axis=1), rng, noise)


def checkerboard(num_samples, seed=0, noise=0.0):
    """Samples FFJORD's 4x4 checkerboard.

    Density: uniform on the 8 "black" unit squares of a 4x4 board on
    ``[-2, 2]^2``, scaled by 2 to ``[-4, 4]^2``; optional Gaussian jitter of std
    `noise` (FFJORD uses none).

    `noise`: Std of the isotropic Gaussian jitter.
    """
    n, rng, noise = _setup(num_samples, seed, noise)
    x1 = rng.uniform(-2.0, 2.0, n)
    x2 = rng.random(n) - 2.0 * rng.integers(0, 2, n) + np.floor(x1) % 2
    return _jitter(2.0 * np.stack([x1, x2], axis=1), rng, noise)


def two_rectangles(num_samples, seed=0, noise=0.0):
    """Samples the union of two disjoint rectangles (CIF paper, Fig. 1).

    Density: uniform on ``[-2, -1] x [-1, 1]`` union ``[1, 2] x [-1, 1]`` (each
    rectangle with probability 1/2); optional Gaussian jitter of std `noise`.
    Its support is disconnected, which a single bijective flow from a Gaussian
    cannot represent exactly.

    `noise`: Std of the isotropic Gaussian jitter.
    """
    n, rng, noise = _setup(num_samples, seed, noise)
    side = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    x1 = side * rng.uniform(1.0, 2.0, n)
    x2 = rng.uniform(-1.0, 1.0, n)
    return _jitter(np.stack([x1, x2], axis=1), rng, noise)


def two_spirals(num_samples, seed=0, noise=0.1):
    """Samples FFJORD's two interleaved spirals ("2spirals").

    Density: angle ``s = 3 pi sqrt(u)``, ``u ~ Uniform[0, 1]``; the point
    ``(-s cos s, s sin s)`` plus Uniform[0, 0.5) jitter per coordinate, negated
    for the second spiral (probability 1/2), divided by 3, plus isotropic
    Gaussian noise of std `noise`. The data lies roughly in ``[-3.5, 3.5]^2``.

    `noise`: Std of the final Gaussian noise (FFJORD uses 0.1).
    """
    n, rng, noise = _setup(num_samples, seed, noise)
    s = np.sqrt(rng.random(n)) * 3.0 * np.pi
    x = -np.cos(s) * s + 0.5 * rng.random(n)
    y = np.sin(s) * s + 0.5 * rng.random(n)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    return _jitter(sign[:, None] * np.stack([x, y], axis=1) / 3.0, rng, noise)


def eight_gaussians(num_samples, seed=0, noise=_EIGHT_GAUSSIANS_STD):
    """Samples FFJORD's mixture of eight Gaussians on a circle.

    Density: equal-weight mixture of 8 isotropic Gaussians with std `noise`,
    centred at ``2 sqrt(2) (cos(k pi / 4), sin(k pi / 4))``, k = 0..7. FFJORD
    draws ``(4 c + 0.5 z) / 1.414``; we divide by ``sqrt(2)`` exactly, so the
    default `noise` ``0.5 / sqrt(2)`` matches it.

    `noise`: Std of each mixture component.
    """
    n, rng, noise = _setup(num_samples, seed, noise)
    angle = rng.integers(0, 8, n) * (np.pi / 4.0)
    centres = 2.0 * np.sqrt(2.0) * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return _jitter(centres, rng, noise)


# Names used by `tfp_flows.datasets.load`.
TOY_DATASETS = {
    "moons": two_moons,
    "four_circles": four_circles,
    "pinwheel": pinwheel,
    "line": line,
    "checkerboard": checkerboard,
    "two_rectangles": two_rectangles,
    "two_spirals": two_spirals,
    "eight_gaussians": eight_gaussians,
}
