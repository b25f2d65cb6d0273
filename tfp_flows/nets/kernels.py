"""Kernel machines over inducing points: the conditioners of Ferumal flows.

English, Kirchler and Lippert, "Kernelised Normalising Flows", ICLR 2024.

A kernel machine maps `u in R^p` to `A k(W, u) in R^m`, where `W = [w_1..w_N]`
are N inducing ("auxiliary") points in `R^p`, `k(W, u) = [k(w_n, u)]_n` and
`A in R^{m x N}`. With the distance `r = ||u - w|| / l` (length scale `l > 0`):

| kernel | `k(r)` |
|---|---|
| `"squared_exponential"` (`"se"`) | `exp(-r^2 / 2)` (paper: `exp(-gamma ||u-w||^2)`) |
| `"matern32"` | `(1 + sqrt(3) r) exp(-sqrt(3) r)` |
| `"matern52"` | `(1 + sqrt(5) r + 5 r^2 / 3) exp(-sqrt(5) r)` |

The squared exponential is the paper's `exp(-gamma ||u - w||^2)` with
`gamma = 1 / (2 l^2)`. Two Keras 3 layers hold the weights:

* `InducingPoints` holds `W` (`[N, p]`). One instance may be shared by several
  `KernelMachine`s (the paper's low-data setting): it is a separate layer so
  that a flow owns it, saves it and counts its weights once.
* `KernelMachine` holds `A_s`, `A_t` (`[N, m]` each, zero-initialised so a
  coupling built on it starts at the identity) and the log length scale, and
  evaluates `(A_s k, A_t k)` given the points.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from tfp_flows.internal import validation
from tfp_flows.nets.mlp import dense

KERNELS = ("squared_exponential", "matern32", "matern52")
_ALIASES = {"se": "squared_exponential", "rbf": "squared_exponential",
            "matern_32": "matern32", "matern_52": "matern52"}


def canonical_kernel(kernel):
    """The canonical name of `kernel` (accepts 'se'/'rbf' for the squared exponential)."""
    if not isinstance(kernel, str):
        raise TypeError(f"`kernel` must be a string, one of {sorted(KERNELS)}; got {kernel!r}.")
    name = _ALIASES.get(kernel.lower(), kernel.lower())
    return validation.one_of(name, "kernel", KERNELS)


def squared_distances(u, points):
    """`||u_i - w_n||^2` for `u: [..., p]`, `points: [N, p]`, as `[..., N]` (clamped >= 0)."""
    # The expanded form is one matmul; cancellation can make it slightly negative.
    cross = dense(u, points, transpose_kernel=True)
    d2 = (tf.reduce_sum(u * u, axis=-1, keepdims=True) - 2.0 * cross
          + tf.reduce_sum(points * points, axis=-1))
    return tf.maximum(d2, 0.0)


def _safe_sqrt(d2):
    # sqrt has an infinite derivative at 0; the Matern kernels are flat there
    # (dk/dr = 0 at r = 0), so routing zeros through a dummy value is exact.
    positive = d2 > 0
    return tf.where(positive, tf.sqrt(tf.where(positive, d2, tf.ones_like(d2))),
                    tf.zeros_like(d2))


def kernel_matrix(kernel, u, points, length_scale):
    """`k(w_n, u)` for every point: `[..., N]`. `kernel` is a canonical name."""
    scaled = squared_distances(u, points) / tf.square(length_scale)
    if kernel == "squared_exponential":
        return tf.exp(-0.5 * scaled)
    r = _safe_sqrt(scaled)
    if kernel == "matern32":
        a = math.sqrt(3.0) * r
        return (1.0 + a) * tf.exp(-a)
    a = math.sqrt(5.0) * r
    return (1.0 + a + a * a / 3.0) * tf.exp(-a)


def median_heuristic(x, points=None, max_rows=1000, seed=0):
    """Median pairwise distance (numpy, eager): the default length scale.

    Between the rows of `x` (off-diagonal) or, if `points` is given, between
    the rows of `x` and `points`. At most `max_rows` rows of `x` (a seeded
    subset) are used, so the cost is bounded. Returns 1.0 if all distances
    are zero (degenerate data).
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1, np.shape(x)[-1])
    if x.shape[0] > max_rows:
        x = x[np.random.default_rng(seed).choice(x.shape[0], max_rows, replace=False)]
    other = x if points is None else np.asarray(points, dtype=np.float64)
    d2 = (np.sum(x**2, 1)[:, None] - 2 * x @ other.T + np.sum(other**2, 1)[None, :])
    if points is None:
        d2 = d2[~np.eye(x.shape[0], dtype=bool)]
    d = np.sqrt(np.maximum(d2.ravel(), 0.0))
    med = float(np.median(d)) if d.size else 0.0
    return med if med > 0 else 1.0


class _InitializedOnce:
    """A non-trainable `initialized` flag: data-dependent initialisation runs once."""

    def _add_initialized_flag(self):
        self.initialized = self.add_weight(shape=(), initializer="zeros", name="initialized",
                                           trainable=False)

    @property
    def is_initialized(self):
        return float(self.initialized.numpy()) > 0


@keras.saving.register_keras_serializable(package="tfp_flows")
class InducingPoints(_InitializedOnce, keras.layers.Layer):
    """Holds `N` inducing points `W: [N, p]` (a Keras weight) and an init flag.

    Built in the constructor. Initialised as `N(0, I)` draws (the scale of
    data after ActNorm); `assign_from_data` replaces them, once, by a random
    subset of the data. `trainable=False` freezes them (the representer form).
    """

    def __init__(self, num_points, point_size, seed=0, trainable=True, **kwargs):
        super().__init__(trainable=trainable, **kwargs)
        self.num_points = validation.positive_int(num_points, "num_points")
        self.point_size = validation.positive_int(point_size, "point_size")
        self.seed = validation.positive_int(seed, "seed", allow_zero=True)
        self.build(None)

    def build(self, input_shape):
        """Creates the points `W` (standard normal) and the initialised-once flag."""
        if self.built:
            return
        init = keras.initializers.RandomNormal(stddev=1.0, seed=self.seed)
        self.points = self.add_weight(shape=(self.num_points, self.point_size),
                                      initializer=init, name="points")
        self._add_initialized_flag()
        self.built = True

    def variable(self):
        """The `tf.Variable` behind `W` (what the bijector computes with)."""
        return self.points.value

    def assign_from_data(self, u):
        """Sets `W` to a seeded random subset of the rows of `u` (`[n, p]`), once.

        With fewer rows than points, rows are drawn with replacement (duplicates
        then drift apart in training). Returns False if already initialised.
        """
        if self.is_initialized:
            return False
        u = np.asarray(u).reshape(-1, self.point_size)
        n = u.shape[0]
        idx = np.random.default_rng(self.seed).choice(n, self.num_points,
                                                      replace=n < self.num_points)
        self.points.assign(u[idx].astype(self.points.dtype))
        self.initialized.assign(1.0)
        return True

    def call(self, inputs=None):
        """The inducing points `W`, `[num_points, point_size]`."""
        return self.points.value

    def get_config(self):
        return {**super().get_config(), "num_points": self.num_points,
                "point_size": self.point_size, "seed": self.seed}


@keras.saving.register_keras_serializable(package="tfp_flows")
class KernelMachine(_InitializedOnce, keras.layers.Layer):
    """`u -> (A_s k(W, u), A_t k(W, u))` with a learnable or fixed length scale.

    The inducing points are passed to `call` (they live in an `InducingPoints`
    layer that may be shared). `A_s` and `A_t` (`[N, output_units]`) start at
    zero. The length scale is `exp(log_length_scale)`, positive by
    construction; with `learn_length_scale=False` it is a non-trainable weight
    (still set by the median heuristic in `set_length_scale`).

    Args:
      num_points: N, the number of inducing points.
      output_units: m, the size of each output (`D - d` in a coupling).
      kernel: 'squared_exponential' ('se'), 'matern32' or 'matern52'.
      length_scale: initial length scale (positive float), or None for 1.0
        until `set_length_scale` (the median heuristic) is called.
      learn_length_scale: whether the length scale is trained.
    """

    def __init__(self, num_points, output_units, kernel="squared_exponential",
                 length_scale=None, learn_length_scale=True, **kwargs):
        super().__init__(**kwargs)
        self.num_points = validation.positive_int(num_points, "num_points")
        self.output_units = validation.positive_int(output_units, "output_units")
        self.kernel = canonical_kernel(kernel)
        self.length_scale = (None if length_scale is None
                             else validation.positive_float(length_scale, "length_scale"))
        self.learn_length_scale = bool(learn_length_scale)
        self.build(None)

    def build(self, input_shape):
        """Creates the zero coefficients `a_s`, `a_t` and the log length scale."""
        if self.built:
            return
        shape = (self.num_points, self.output_units)
        self.a_s = self.add_weight(shape=shape, initializer="zeros", name="a_s")
        self.a_t = self.add_weight(shape=shape, initializer="zeros", name="a_t")
        init = math.log(self.length_scale or 1.0)
        self.log_length_scale = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(init), name="log_length_scale",
            trainable=self.learn_length_scale)
        self._add_initialized_flag()
        self.built = True

    def set_length_scale(self, u, points):
        """Median-heuristic length scale between `u` and `points`, once.

        Skipped (returns False) when already done or when a `length_scale` was
        given explicitly.
        """
        if self.is_initialized:
            return False
        if self.length_scale is None:
            self.log_length_scale.assign(math.log(median_heuristic(u, points)))
        self.initialized.assign(1.0)
        return True

    def features(self, u, points):
        """`k(W, u)`: `[..., N]`."""
        return kernel_matrix(self.kernel, u, points, tf.exp(self.log_length_scale.value))

    def call(self, u, points):
        """`k(W, u) [a_s, a_t]`: the raw log-scale and shift `[..., 2 * output_units]`."""
        k = self.features(u, points)
        a = tf.concat([self.a_s.value, self.a_t.value], axis=-1)
        out = dense(k, a)
        return out[..., :self.output_units], out[..., self.output_units:]

    def get_config(self):
        return {**super().get_config(), "num_points": self.num_points,
                "output_units": self.output_units, "kernel": self.kernel,
                "length_scale": self.length_scale,
                "learn_length_scale": self.learn_length_scale}
