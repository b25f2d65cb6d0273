"""Ready-made funnel flows (Klein et al., seed 001) and the F-MLP's baseline.

Each builder returns a `tfp_flows.distributions.Funnel` (or, for `mlp_flow`, a
flow) registered by name, so `FlowModel.from_flow("funnel_nsf", ...)` trains it
and `model.save` / `keras.models.load_model` restore it. Every `log_prob` is
exact.

| name | structure (density direction) |
|---|---|
| `funnel_nsf` | NSF layers on x, a coupling funnel with a conditional RQ spline, NSF on z |
| `funnel_glow` | Glow steps on x, a coupling funnel with a conditional affine map, Glow on z |
| `funnel_slice` | as `funnel_nsf` with F = identity (SurVAE's slice surjection) |
| `funnel_mlp` | stacked F-MLP layers `z = R x_plus + W' x_minus + b`, spline activations |
| `funnel_conv` | ActNorm, stacked convolutional funnels (kernel stride = width), NSF on z |
| `mlp_flow` | the F-MLP without reduction: `LULinear` + spline activations |

"One flow layer replaced by a funnel" (paper A.6): of `num_layers` steps,
step `funnel_layer` is the funnel, the ones before act on x, the ones after
on z. The default latent is 25% smaller than the data (`round(0.75 D)`).
"""

import numpy as np

from tfp_flows.bijectors.actnorm import ActNorm
from tfp_flows.bijectors.funnel_maps import ElementwiseAffine, ElementwiseSpline, FunnelLinear
from tfp_flows.bijectors.lu_linear import LULinear
from tfp_flows.bijectors.permute import random_permutation
from tfp_flows.distributions.funnel import Funnel
from tfp_flows.distributions.funnel_decoders import (
    FlowDecoder,
    GaussianDecoder,
    TileGaussianDecoder,
)
from tfp_flows.flows import baselines
from tfp_flows.flows.registry import register_flow
from tfp_flows.internal import validation


def default_latent_size(event_size):
    """A latent 25% smaller than the data (at least one dimension dropped)."""
    return max(1, min(event_size - 1, int(round(0.75 * event_size))))


def _sizes(event_size, latent_size):
    event_size = validation.positive_int(event_size, "event_size")
    if event_size < 2:
        raise ValueError(f"A funnel needs `event_size` >= 2; got {event_size}.")
    latent = default_latent_size(event_size) if latent_size is None else latent_size
    latent = validation.positive_int(latent, "latent_size")
    if latent >= event_size:
        raise ValueError(f"`latent_size` must be smaller than `event_size` ({event_size}); "
                         f"got {latent}.")
    return event_size, latent


def _decoder(kind, dropped, latent, hidden_units, num_bins, bound, seed, dtype):
    validation.one_of(kind, "decoder", ("flow", "gaussian"))
    if kind == "gaussian":
        return GaussianDecoder(dropped, latent, hidden_units, dtype=dtype.name)
    return FlowDecoder(dropped, latent, "neural_spline", 2, hidden_units, num_bins, bound,
                       seed=seed, dtype=dtype.name)


def _layer_split(num_layers, funnel_layer):
    num_layers = validation.positive_int(num_layers, "num_layers")
    funnel_layer = num_layers // 2 if funnel_layer is None else funnel_layer
    funnel_layer = validation.positive_int(funnel_layer, "funnel_layer", allow_zero=True)
    if funnel_layer >= num_layers:
        raise ValueError(f"`funnel_layer` must be in [0, num_layers) = [0, {num_layers}); "
                         f"got {funnel_layer}.")
    return funnel_layer, num_layers - funnel_layer - 1


def _coupling_funnel(kind, event_size, latent_size, num_layers, funnel_layer, hidden_units,
                     num_bins, bound, decoder, decoder_hidden_units, seed, dtype):
    event_size, latent = _sizes(event_size, latent_size)
    dtype = validation.float_dtype(dtype)
    num_pre, num_post = _layer_split(num_layers, funnel_layer)
    dropped = event_size - latent

    def flow(size, layers, s):
        if kind == "spline":
            return baselines.neural_spline(size, layers, num_bins, bound, hidden_units,
                                           lu_linear=True, seed=s, dtype=dtype)
        return baselines.glow(size, layers, hidden_units, seed=s, dtype=dtype)

    pre = flow(event_size, num_pre, seed).bijector if num_pre else None
    if kind == "spline":
        f = ElementwiseSpline(latent, dropped, num_bins, bound, hidden_units, dtype=dtype,
                              name="funnel_spline")
    else:
        f = ElementwiseAffine(latent, dropped, hidden_units, dtype=dtype, name="funnel_affine")
    base = (flow(latent, num_post, seed + 100) if num_post and latent >= 2
            else baselines.standard_normal(latent, dtype))
    dec = _decoder(decoder, dropped, latent, decoder_hidden_units or hidden_units, num_bins,
                   bound, seed, dtype)
    return Funnel(event_size, dropped, base, dec, f, pre)


@register_flow("funnel_nsf")
def funnel_nsf(event_size, latent_size=None, num_layers=4, funnel_layer=None, num_bins=8,
               bound=4.0, hidden_units=(64, 64), decoder="flow", decoder_hidden_units=None,
               seed=0, dtype="float32"):
    """F-NSF: a neural spline flow with step `funnel_layer` replaced by a funnel.

    The funnel drops the first `event_size - latent_size` coordinates of its
    input (after an `LULinear`, so which ones is learned) and maps the rest
    through a rational-quadratic spline whose knots come from an MLP of the
    dropped ones. `decoder`: 'flow' (conditional NSF, paper's tabular choice)
    or 'gaussian'. `log_prob` is exact.

    #### Examples

    ```python
    funnel = funnel_nsf(event_size=8)          # latent 6, funnel at step 2 of 4
    model = FlowModel.from_flow("funnel_nsf", event_size=8, latent_size=6)
    ```
    """
    return _coupling_funnel("spline", event_size, latent_size, num_layers, funnel_layer,
                            hidden_units, num_bins, bound, decoder, decoder_hidden_units, seed,
                            dtype)


@register_flow("funnel_glow")
def funnel_glow(event_size, latent_size=None, num_layers=4, funnel_layer=None,
                hidden_units=(64, 64), decoder="flow", decoder_hidden_units=None, seed=0,
                dtype="float32"):
    """F-Glow: Glow steps with one step replaced by an affine coupling funnel.

    `z = (x_plus - t(x_minus)) exp(-s(x_minus))`; exact `log_prob`.
    """
    return _coupling_funnel("affine", event_size, latent_size, num_layers, funnel_layer,
                            hidden_units, 8, 4.0, decoder, decoder_hidden_units, seed, dtype)


@register_flow("funnel_slice")
def funnel_slice(event_size, latent_size=None, num_layers=4, funnel_layer=None, num_bins=8,
                 bound=4.0, hidden_units=(64, 64), decoder="gaussian", seed=0,
                 dtype="float32"):
    """The slice surjection (SurVAE; paper A.3): a funnel with F = identity.

    `log p(x) = log p_Z(x_plus) + log p_phi(x_minus | x_plus)` after the NSF
    layers on x. Exact.
    """
    event_size, latent = _sizes(event_size, latent_size)
    dtype = validation.float_dtype(dtype)
    num_pre, num_post = _layer_split(num_layers, funnel_layer)
    pre = (baselines.neural_spline(event_size, num_pre, num_bins, bound, hidden_units,
                                   lu_linear=True, seed=seed, dtype=dtype).bijector
           if num_pre else None)
    base = (baselines.neural_spline(latent, num_post, num_bins, bound, hidden_units,
                                    seed=seed + 100, dtype=dtype)
            if num_post and latent >= 2 else baselines.standard_normal(latent, dtype))
    dec = _decoder(decoder, event_size - latent, latent, hidden_units, num_bins, bound, seed,
                   dtype)
    return Funnel(event_size, event_size - latent, base, dec, None, pre)


def _mlp_sizes(event_size, latent_sizes):
    event_size = validation.positive_int(event_size, "event_size")
    if latent_sizes is None:
        latent_sizes = (default_latent_size(event_size),)
    sizes = (event_size, *validation.int_tuple(latent_sizes, "latent_sizes", allow_empty=False))
    if any(b >= a for a, b in zip(sizes, sizes[1:], strict=False)):
        raise ValueError("`latent_sizes` must decrease strictly from `event_size`; "
                         f"got {event_size} -> {list(sizes[1:])}.")
    return sizes


@register_flow("funnel_mlp")
def funnel_mlp(event_size, latent_sizes=None, num_bins=5, bound=4.0, hidden_units=(64, 64),
               seed=0, dtype="float32"):
    """F-MLP: `event_size -> latent_sizes[0] -> ... -> latent_sizes[-1]` funnels.

    Layer i: `z = R x_plus + W' x_minus + b` (`FunnelLinear`, R in LU form), a
    Gaussian decoder for `x_minus`; a fixed random permutation before the first
    layer and a learnable elementwise RQ spline (`num_bins` bins on
    `[-bound, bound]`) as the activation between layers. The innermost base is
    `N(0, I)`. Exact `log_prob`.
    """
    sizes = _mlp_sizes(event_size, latent_sizes)
    dtype = validation.float_dtype(dtype)
    dist = baselines.standard_normal(sizes[-1], dtype)
    for i in range(len(sizes) - 2, -1, -1):
        size, latent = sizes[i], sizes[i + 1]
        pre = (random_permutation(size, seed) if i == 0 else
               ElementwiseSpline(size, 0, num_bins, bound, dtype=dtype, name=f"activation_{i}"))
        f = FunnelLinear(latent, size - latent, seed=seed + i, dtype=dtype,
                         name=f"funnel_linear_{i}")
        dec = GaussianDecoder(size - latent, latent, hidden_units, dtype=dtype.name)
        dist = Funnel(size, size - latent, dist, dec, f, pre, name=f"funnel_mlp_{i}")
    return dist


@register_flow("mlp_flow")
def mlp_flow(event_size, num_layers=2, num_bins=5, bound=4.0, seed=0, dtype="float32"):
    """The F-MLP's dimension-preserving baseline: `num_layers` of `LULinear` (plus
    bias-free) and a learnable elementwise RQ spline activation."""
    event_size = validation.positive_int(event_size, "event_size")
    num_layers = validation.positive_int(num_layers, "num_layers")
    dtype = validation.float_dtype(dtype)
    bijectors = [random_permutation(event_size, seed)]
    for i in range(num_layers):
        if i > 0:
            bijectors.append(ElementwiseSpline(event_size, 0, num_bins, bound, dtype=dtype,
                                               name=f"activation_{i}"))
        bijectors.append(LULinear(event_size, seed=seed + i, dtype=dtype))
    return baselines.transformed(bijectors, event_size, dtype)


def conv_tile_indices(image_shape, kernel_size):
    """`(dropped, kept)` flat indices of a row-major `[H, W, C]` image cut into tiles.

    Tiles are `kh x kw` with stride equal to the width; the bottom-right element
    of each tile (all channels) is kept. Both lists are tile-major: tile
    `(r, c)` in row-major order, then position in the tile, then channel.
    """
    h, w, c = image_shape
    kh, kw = kernel_size
    idx = np.arange(h * w * c).reshape(h // kh, kh, w // kw, kw, c).transpose(0, 2, 1, 3, 4)
    idx = idx.reshape(h // kh, w // kw, kh * kw, c)
    dropped = idx[:, :, :-1, :].reshape(-1)
    kept = idx[:, :, -1, :].reshape(-1)
    return dropped.astype(np.int32), kept.astype(np.int32)


def _conv_shapes(image_shape, kernel_size, num_funnels):
    shape = validation.int_tuple(image_shape, "image_shape")
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3:
        raise ValueError(f"`image_shape` must be (height, width[, channels]); got {shape}.")
    kernel = validation.int_tuple(
        (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size,
        "kernel_size")
    if len(kernel) != 2 or kernel == (1, 1):
        raise ValueError(f"`kernel_size` must be an int or (kh, kw), not (1, 1); got {kernel}.")
    shapes = [shape]
    for _ in range(validation.positive_int(num_funnels, "num_funnels")):
        h, w, c = shapes[-1]
        if h % kernel[0] or w % kernel[1]:
            raise ValueError(
                f"A stride-{kernel} convolutional funnel needs image sizes divisible by the "
                f"kernel at every level; got image {h}x{w} (from `image_shape` "
                f"{shape} with {num_funnels} funnels).")
        shapes.append((h // kernel[0], w // kernel[1], c))
    return shapes, kernel


@register_flow("funnel_conv")
def funnel_conv(image_shape, kernel_size=2, num_funnels=1, num_layers=2, actnorm=True,
                num_bins=8, bound=4.0, hidden_units=(64, 64), decoder_hidden_units=(64,),
                neighbourhood=1, seed=0, dtype="float32"):
    """Convolutional funnels on flat images `[..., H*W*C]` (row-major `[H, W, C]`).

    Each funnel cuts its input into `kernel_size` tiles (stride = width), keeps
    the bottom-right element of every tile, and maps it through a shared
    kernel `z_t = R x_plus_t + W' x_minus_t + b` (`FunnelLinear`, so
    `log|det| = num_tiles log|det R|`); a `TileGaussianDecoder` models each
    tile's dropped entries from its latent neighbourhood. `num_funnels` funnels
    shrink every side by the kernel each time; then `num_layers` NSF layers act
    on the final latent. `actnorm=True` standardises the input first
    (data-dependent init). Exact `log_prob`.

    #### Examples

    ```python
    # 8x8 digits (flat [N, 64]) -> 16 -> 4 latents, then NSF on the 4.
    model = FlowModel.from_flow("funnel_conv", image_shape=[8, 8], num_funnels=2)
    ```
    """
    shapes, kernel = _conv_shapes(image_shape, kernel_size, num_funnels)
    dtype = validation.float_dtype(dtype)
    num_layers = validation.positive_int(num_layers, "num_layers", allow_zero=True)
    latent = int(np.prod(shapes[-1]))
    dist = (baselines.neural_spline(latent, num_layers, num_bins, bound, hidden_units,
                                    seed=seed, dtype=dtype)
            if num_layers and latent >= 2 else baselines.standard_normal(latent, dtype))
    per_tile = kernel[0] * kernel[1] - 1
    for i in range(len(shapes) - 2, -1, -1):
        shape, (lh, lw, c) = shapes[i], shapes[i + 1]
        dropped, _ = conv_tile_indices(shape, kernel)
        f = FunnelLinear(c, per_tile * c, num_tiles=lh * lw, seed=seed + i, dtype=dtype,
                         name=f"conv_funnel_{i}")
        dec = TileGaussianDecoder((lh, lw, c), per_tile * c, neighbourhood,
                                  decoder_hidden_units, dtype=dtype.name)
        size = int(np.prod(shape))
        pre = ActNorm(size, dtype=dtype) if (i == 0 and actnorm) else None
        dist = Funnel(size, dropped, dist, dec, f, pre, name=f"conv_funnel_{i}")
    return dist


__all__ = ["conv_tile_indices", "default_latent_size", "funnel_conv", "funnel_glow",
           "funnel_mlp", "funnel_nsf", "funnel_slice", "mlp_flow"]
