"""Decoders `p_phi(x_minus | z[, c])` for funnels: the density of the dropped coordinates.

A decoder is a `tf.Module` with

* `log_prob(x_minus, z, conditional_input=None) -> [...]`: exact
  `log p_phi(x_minus | z, c)`, never clipped (clipping it, as the reference
  implementation does at -10000, biases the NLL upwards for outliers and
  zeroes their gradient);
* `sample(z, seed=None, conditional_input=None) -> x_minus`, one draw per row
  of `z`;
* `dropped_size`, `latent_size`, `conditional_size` (the size `C` of the
  funnel's own condition `c`, 0 for none; declared through the flow contract,
  `tfp_flows.internal.contract`); optionally
  `initialize_from_data(x_minus, z, conditional_input=None)`.

| decoder | `p_phi(x_minus | z, c)` |
|---|---|
| `GaussianDecoder` | `N(mu(z, c), diag sigma(z, c)^2)` from an MLP (`nets.GaussianHead`) |
| `FlowDecoder` | a flow on `x_minus` (affine + spline/affine couplings) conditioned on `[z, c]` |
| `TileGaussianDecoder` | per image tile, a Gaussian from the tile's `z`, its neighbours and `c` |

Gaussian scales are `softplus(raw + log(e - 1)) + min_scale` (unit at a zero
network output, never below `min_scale`), so the density stays finite.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.bijectors.coupling import coupling_layer
from tfp_flows.bijectors.funnel_maps import ElementwiseAffine, ElementwiseSpline
from tfp_flows.bijectors.permute import random_permutation
from tfp_flows.internal import contract, keras_owned, validation
from tfp_flows.internal.config import Configurable
from tfp_flows.nets.gaussian import GaussianHead
from tfp_flows.nets.mlp import concat_condition

tfb = tfp.bijectors
tfd = tfp.distributions


class _Decoder(Configurable, tf.Module):
    """Shared plumbing: sizes, the contract declaration, the condition check."""

    def __init__(self, dropped_size, latent_size, conditional_size, name):
        super().__init__(name=name)
        self.dropped_size = validation.positive_int(dropped_size, "dropped_size")
        self.latent_size = validation.positive_int(latent_size, "latent_size")
        contract.declare(self, validation.positive_int(conditional_size, "conditional_size",
                                                       allow_zero=True))

    @property
    def conditional_size(self):
        """Size of the funnel's condition `c` this decoder takes (0: none)."""
        return contract.conditional_size(self)

    def _condition(self, conditional_input, dtype):
        return contract.check_conditional_input(self, conditional_input, dtype,
                                                owner=type(self).__name__)


class GaussianDecoder(_Decoder):
    """`p(x_minus | z, c) = N(mu(z, c), diag sigma(z, c)^2)`, `(mu, sigma) = MLP([z, c])`.

    A thin wrapper over `tfp_flows.nets.GaussianHead` with `scale="softplus"`:
    `sigma = softplus(.) + min_scale`, so the density stays finite; a new
    decoder predicts `N(0, I)` (zero-initialised output layer).

    #### Examples

    ```python
    dec = GaussianDecoder(dropped_size=2, latent_size=6)
    lp = dec.log_prob(x_minus, z)          # [N]
    x_minus = dec.sample(z, seed=(0, 1))   # [N, 2]
    cdec = GaussianDecoder(2, 6, conditional_size=3)
    lp = cdec.log_prob(x_minus, z, conditional_input=c)   # c: [N, 3]
    ```
    """

    def __init__(self, dropped_size, latent_size, hidden_units=(64, 64), activation="relu",
                 min_scale=1e-3, dtype="float32", name="gaussian_decoder", conditional_size=0):
        super().__init__(dropped_size, latent_size, conditional_size, name)
        self.head = GaussianHead(self.latent_size, self.dropped_size, hidden_units, activation,
                                 conditional_size=self.conditional_size, scale="softplus",
                                 min_scale=min_scale, dtype=dtype, name=f"{name}_head")
        keras_owned.own_keras_layers(self, self.head.net)

    @property
    def net(self):
        """The MLP `[z, c] -> [mu, raw scale]`."""
        return self.head.net

    def log_prob(self, x_minus, z, conditional_input=None):
        """`log p_phi(x_minus | z [, c])`, `[...]`."""
        c = self._condition(conditional_input, z.dtype)
        return self.head.log_prob(x_minus, z, conditional_input=c)

    def sample(self, z, seed=None, conditional_input=None):
        """One draw `x_minus ~ p_phi(. | z [, c])` per row of `z`."""
        c = self._condition(conditional_input, z.dtype)
        return self.head.sample(z, seed, conditional_input=c)


class FlowDecoder(_Decoder):
    """`p(x_minus | z, c)`: a conditional flow on `x_minus` with a standard normal base.

    In the density direction: a conditional elementwise affine map (the
    Gaussian decoder's mean and scale), then `num_layers` coupling layers
    (`bijectors.coupling.coupling_layer`, `flow='neural_spline'` or `'real_nvp'`)
    between fixed permutations, or, when `x_minus` is one-dimensional, a
    conditional elementwise spline. Every layer's network sees `[z, c]`.
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
                 name="flow_decoder", conditional_size=0):
        super().__init__(dropped_size, latent_size, conditional_size, name)
        validation.one_of(flow, "flow", ("neural_spline", "real_nvp"))
        dtype = validation.float_dtype(dtype)
        m = self.dropped_size
        cond = self.latent_size + self.conditional_size  # the flow's condition: [z, c]
        num_layers = validation.positive_int(num_layers, "num_layers")
        bijectors = [ElementwiseAffine(m, cond, hidden_units, dtype=dtype,
                                       name="decoder_affine")]
        if m == 1:
            bijectors.append(ElementwiseSpline(m, cond, num_bins, bound, hidden_units,
                                               dtype=dtype, name="decoder_spline"))
        kind, extra = (("spline", {"num_bins": num_bins, "bound": bound})
                       if flow == "neural_spline" else ("affine", {}))
        for i in range(num_layers if m > 1 else 0):
            # Couplings between fixed permutations; conditioners see [z, c] as well.
            bijectors.append(random_permutation(m, seed + i))
            bijectors.append(coupling_layer(m, kind, cond, f"decoder_coupling_{i}",
                                            hidden_units=hidden_units, dtype=dtype.name,
                                            **extra))
        base = tfd.MultivariateNormalDiag(loc=tf.zeros([m], dtype=dtype))
        self.flow = tfd.TransformedDistribution(base, tfb.Chain(bijectors))
        keras_owned.own_keras_layers(self, *keras_owned.find_keras_layers(self.flow))

    def _flow_condition(self, z, conditional_input):
        return concat_condition(z, self._condition(conditional_input, z.dtype))

    def log_prob(self, x_minus, z, conditional_input=None):
        """`log p_phi(x_minus | z [, c])`, `[...]`."""
        return contract.log_prob(self.flow, x_minus,
                                 conditional_input=self._flow_condition(z, conditional_input))

    def sample(self, z, seed=None, conditional_input=None):
        """One draw `x_minus ~ p_phi(. | z [, c])` per row of `z`."""
        h = self._flow_condition(z, conditional_input)
        u = self.flow.distribution.sample(tf.shape(h)[:-1], seed=seed)
        return self.flow.bijector.forward(u, **contract.route(self.flow.bijector, h))

    def initialize_from_data(self, x_minus, z, conditional_input=None):
        """Data-dependent initialisation of the decoder's flow on `x_minus` given `z` (and `c`)."""
        contract.initialize_from_data(self.flow, x_minus,
                                      conditional_input=self._flow_condition(z,
                                                                             conditional_input))


class TileGaussianDecoder(_Decoder):
    """Per-tile Gaussian `p(x_minus | z, c)` for the convolutional funnel (paper A.8).

    The image `[H, W, C]` is cut into `kh x kw` tiles; `z` holds `C` numbers per
    tile (`[H/kh, W/kw, C]`, flattened row-major) and `x_minus` the other
    `(kh kw - 1) C` numbers of each tile, tile-major. One Gaussian head
    (`nets.GaussianHead`, softplus scale), shared by all tiles (amortised),
    maps the `(2r+1)^2 C` latents of a tile's neighbourhood of radius
    `r = neighbourhood` (zero-padded at the border), and the funnel's condition
    `c` if any, to the mean and scale of that tile's dropped entries.

    #### Examples

    ```python
    # 8x8 grey image, 2x2 tiles: 16 latents, 3 dropped entries per tile.
    dec = TileGaussianDecoder(latent_shape=(4, 4, 1), dropped_per_tile=3)
    ```
    """

    def __init__(self, latent_shape, dropped_per_tile, neighbourhood=1, hidden_units=(64, 64),
                 activation="relu", min_scale=1e-3, dtype="float32", name="tile_decoder",
                 conditional_size=0):
        latent_shape = validation.int_tuple(latent_shape, "latent_shape")
        if len(latent_shape) != 3:
            raise ValueError("`latent_shape` must be (rows, cols, channels); "
                             f"got {latent_shape}.")
        per_tile = validation.positive_int(dropped_per_tile, "dropped_per_tile")
        rows, cols, channels = latent_shape
        super().__init__(rows * cols * per_tile, rows * cols * channels, conditional_size, name)
        self.latent_shape, self._per_tile = latent_shape, per_tile
        self._radius = validation.positive_int(neighbourhood, "neighbourhood", allow_zero=True)
        self.head = GaussianHead((2 * self._radius + 1) ** 2 * channels, per_tile, hidden_units,
                                 activation, conditional_size=self.conditional_size,
                                 scale="softplus", min_scale=min_scale, dtype=dtype,
                                 name=f"{name}_head")
        keras_owned.own_keras_layers(self, self.head.net)

    @property
    def net(self):
        """The MLP shared by all tiles: `[neighbourhood, c] -> [mu, raw scale]`."""
        return self.head.net

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

    def _inputs(self, z, conditional_input):
        c = self._condition(conditional_input, z.dtype)
        return self._neighbourhoods(z), (None if c is None else c[..., tf.newaxis, :])

    def log_prob(self, x_minus, z, conditional_input=None):
        """`log p_phi(x_minus | z [, c])`, `[...]`."""
        h, c = self._inputs(z, conditional_input)
        x_tiles = tf.reshape(x_minus, tf.concat([tf.shape(x_minus)[:-1],
                                                 [-1, self._per_tile]], 0))
        return tf.reduce_sum(self.head.log_prob(x_tiles, h, conditional_input=c), axis=-1)

    def sample(self, z, seed=None, conditional_input=None):
        """One draw `x_minus ~ p_phi(. | z [, c])` per row of `z`."""
        h, c = self._inputs(z, conditional_input)
        x_tiles = self.head.sample(h, seed, conditional_input=c)
        return tf.reshape(x_tiles, tf.concat([tf.shape(x_tiles)[:-2], [self.dropped_size]], 0))
