"""Decoders `p_phi(x_minus | z)` for funnels: the density of the dropped coordinates.

A decoder is a `tf.Module` with

* `log_prob(x_minus, z) -> [...]`: exact `log p_phi(x_minus | z)`, never
  clipped (the reference code clips it at -10000, which biases the NLL and
  zeroes the gradient of outliers; DESIGN.md 3.2);
* `sample(z, seed=None) -> x_minus`, one draw per row of `z`;
* `dropped_size`, `latent_size`; optionally `initialize_from_data(x_minus, z)`.

| decoder | `p_phi(x_minus | z)` |
|---|---|
| `GaussianDecoder` | `N(mu(z), diag sigma(z)^2)` from an MLP |
| `FlowDecoder` | a conditional flow on `x_minus` (affine + spline/affine couplings) given `z` |
| `TileGaussianDecoder` | per image tile, a Gaussian from the tile's `z` and its neighbours |
"""

import math

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.bijectors.conditioners import (
    AffineCouplingConditioner,
    SplineCouplingConditioner,
)
from tfp_flows.bijectors.funnel_maps import ElementwiseAffine, ElementwiseSpline
from tfp_flows.bijectors.permute import random_permutation
from tfp_flows.internal import contract, keras_owned, validation
from tfp_flows.internal.config import Configurable
from tfp_flows.nets.mlp import MLP

tfb = tfp.bijectors
tfd = tfp.distributions

_LOG_2PI = math.log(2 * math.pi)
# softplus(0 + log(e - 1)) = 1: a new decoder (zero output layer) has unit scale.
_UNIT_SCALE_SHIFT = 0.5413248546129181


def _gaussian_log_prob(x, loc, scale):
    """Sum over the last axis of `log N(x; loc, scale^2)`; exact, unclipped."""
    u = (x - loc) / scale
    return tf.reduce_sum(-0.5 * u**2 - tf.math.log(scale) - 0.5 * _LOG_2PI, axis=-1)


def _scale(raw, min_scale):
    return tf.nn.softplus(raw + _UNIT_SCALE_SHIFT) + min_scale


class GaussianDecoder(Configurable, tf.Module):
    """`p(x_minus | z) = N(mu(z), diag sigma(z)^2)`, `(mu, sigma) = MLP(z)`.

    `sigma = softplus(.) + min_scale`, so the density stays finite; a new
    decoder predicts `N(0, I)` (zero-initialised output layer).

    #### Examples

    ```python
    dec = GaussianDecoder(dropped_size=2, latent_size=6)
    lp = dec.log_prob(x_minus, z)          # [N]
    x_minus = dec.sample(z, seed=(0, 1))   # [N, 2]
    ```
    """

    def __init__(self, dropped_size, latent_size, hidden_units=(64, 64), activation="relu",
                 min_scale=1e-3, dtype="float32", name="gaussian_decoder"):
        super().__init__(name=name)
        self.dropped_size = validation.positive_int(dropped_size, "dropped_size")
        self.latent_size = validation.positive_int(latent_size, "latent_size")
        self._min_scale = validation.positive_float(min_scale, "min_scale")
        self.net = keras_owned.build_layer(
            MLP(2 * self.dropped_size, hidden_units, activation,
                dtype=validation.float_dtype(dtype).name), (None, self.latent_size))
        keras_owned.own_keras_layers(self, self.net)

    def _loc_scale(self, z):
        loc, raw = tf.split(self.net(z), 2, axis=-1)
        return loc, _scale(raw, self._min_scale)

    def log_prob(self, x_minus, z):
        loc, scale = self._loc_scale(z)
        return _gaussian_log_prob(x_minus, loc, scale)

    def sample(self, z, seed=None):
        loc, scale = self._loc_scale(z)
        return loc + scale * tf.random.stateless_normal(tf.shape(loc), seed, dtype=loc.dtype)


class FlowDecoder(Configurable, tf.Module):
    """`p(x_minus | z)`: a conditional flow on `x_minus` with a standard normal base.

    In the density direction: a conditional elementwise affine map (the
    Gaussian decoder's mean and scale), then `num_layers` coupling layers whose
    conditioners also see `z` (`flow='neural_spline'` or `'real_nvp'`), or, when
    `x_minus` is one-dimensional, a conditional elementwise spline.
    `log_prob` is exact (change of variables).

    #### Examples

    ```python
    dec = FlowDecoder(dropped_size=2, latent_size=6, flow="neural_spline", num_layers=2)
    funnel = Funnel(8, 2, base=tfd.MultivariateNormalDiag(tf.zeros(6)), decoder=dec,
                    conditional_map=ElementwiseSpline(6, conditional_size=2))
    ```
    """

    def __init__(self, dropped_size, latent_size, flow="neural_spline", num_layers=2,
                 hidden_units=(32, 32), num_bins=8, bound=4.0, seed=0, dtype="float32",
                 name="flow_decoder"):
        super().__init__(name=name)
        self.dropped_size = validation.positive_int(dropped_size, "dropped_size")
        self.latent_size = validation.positive_int(latent_size, "latent_size")
        validation.one_of(flow, "flow", ("neural_spline", "real_nvp"))
        dtype = validation.float_dtype(dtype)
        m, d = self.dropped_size, self.latent_size
        num_layers = validation.positive_int(num_layers, "num_layers")
        bijectors = [ElementwiseAffine(m, d, hidden_units, dtype=dtype, name="decoder_affine")]
        if m == 1:
            bijectors.append(ElementwiseSpline(m, d, num_bins, bound, hidden_units, dtype=dtype,
                                               name="decoder_spline"))
        for i in range(num_layers if m > 1 else 0):
            # Couplings between fixed permutations; conditioners see z as well.
            bijectors.append(random_permutation(m, seed + i))
            num_masked = m // 2
            if flow == "neural_spline":
                cond = SplineCouplingConditioner(num_masked, m - num_masked, num_bins, bound,
                                                 hidden_units, conditional_size=d,
                                                 dtype=dtype.name)
                bij = tfb.RealNVP(num_masked=num_masked, bijector_fn=cond,
                                  name=f"decoder_coupling_{i}")
            else:
                cond = AffineCouplingConditioner(num_masked, m - num_masked, hidden_units,
                                                 conditional_size=d, dtype=dtype.name)
                bij = tfb.RealNVP(num_masked=num_masked, shift_and_log_scale_fn=cond,
                                  name=f"decoder_coupling_{i}")
            bijectors.append(contract.mark_conditional(bij, d))
        base = tfd.MultivariateNormalDiag(loc=tf.zeros([m], dtype=dtype))
        self.flow = tfd.TransformedDistribution(base, tfb.Chain(bijectors))
        keras_owned.own_keras_layers(self, *keras_owned.find_keras_layers(self.flow))

    def log_prob(self, x_minus, z):
        return contract.log_prob(self.flow, x_minus, conditional_input=z)

    def sample(self, z, seed=None):
        u = self.flow.distribution.sample(tf.shape(z)[:-1], seed=seed)
        return self.flow.bijector.forward(
            u, **contract.conditional_kwargs(self.flow.bijector, z))

    def initialize_from_data(self, x_minus, z):
        contract.initialize_from_data(self.flow, x_minus, conditional_input=z)


class TileGaussianDecoder(Configurable, tf.Module):
    """Per-tile Gaussian `p(x_minus | z)` for the convolutional funnel (paper A.8).

    The image `[H, W, C]` is cut into `kh x kw` tiles; `z` holds `C` numbers per
    tile (`[H/kh, W/kw, C]`, flattened row-major) and `x_minus` the other
    `(kh kw - 1) C` numbers of each tile, tile-major. One MLP, shared by all
    tiles (amortised), maps the `(2r+1)^2 C` latents of a tile's neighbourhood of
    radius `r = neighbourhood` (zero-padded at the border) to the mean and scale
    of that tile's dropped entries.

    #### Examples

    ```python
    # 8x8 grey image, 2x2 tiles: 16 latents, 3 dropped entries per tile.
    dec = TileGaussianDecoder(latent_shape=(4, 4, 1), dropped_per_tile=3)
    ```
    """

    def __init__(self, latent_shape, dropped_per_tile, neighbourhood=1, hidden_units=(64, 64),
                 activation="relu", min_scale=1e-3, dtype="float32", name="tile_decoder"):
        super().__init__(name=name)
        self.latent_shape = validation.int_tuple(latent_shape, "latent_shape")
        if len(self.latent_shape) != 3:
            raise ValueError("`latent_shape` must be (rows, cols, channels); "
                             f"got {self.latent_shape}.")
        self._per_tile = validation.positive_int(dropped_per_tile, "dropped_per_tile")
        self._radius = validation.positive_int(neighbourhood, "neighbourhood", allow_zero=True)
        self._min_scale = validation.positive_float(min_scale, "min_scale")
        rows, cols, channels = self.latent_shape
        self.latent_size = rows * cols * channels
        self.dropped_size = rows * cols * self._per_tile
        inputs = (2 * self._radius + 1) ** 2 * channels
        self.net = keras_owned.build_layer(
            MLP(2 * self._per_tile, hidden_units, activation,
                dtype=validation.float_dtype(dtype).name), (None, inputs))
        keras_owned.own_keras_layers(self, self.net)

    def _neighbourhoods(self, z):
        """`[..., rows * cols, (2r+1)^2 C]`: each tile's latent neighbourhood."""
        rows, cols, channels = self.latent_shape
        r = self._radius
        batch = tf.shape(z)[:-1]
        img = tf.reshape(z, [-1, rows, cols, channels])
        img = tf.pad(img, [[0, 0], [r, r], [r, r], [0, 0]])
        # Shifted static slices, not extract_patches: cheap and XLA-friendly.
        patches = [img[:, i:i + rows, j:j + cols, :]
                   for i in range(2 * r + 1) for j in range(2 * r + 1)]
        out = tf.concat(patches, axis=-1)
        return tf.reshape(out, tf.concat([batch, [rows * cols, -1]], 0))

    def _loc_scale(self, z):
        loc, raw = tf.split(self.net(self._neighbourhoods(z)), 2, axis=-1)
        shape = tf.concat([tf.shape(z)[:-1], [self.dropped_size]], 0)
        return tf.reshape(loc, shape), tf.reshape(_scale(raw, self._min_scale), shape)

    def log_prob(self, x_minus, z):
        loc, scale = self._loc_scale(z)
        return _gaussian_log_prob(x_minus, loc, scale)

    def sample(self, z, seed=None):
        loc, scale = self._loc_scale(z)
        return loc + scale * tf.random.stateless_normal(tf.shape(loc), seed, dtype=loc.dtype)
