"""Ready-made funnel flows and the F-MLP's baseline.

Funnels: S. Klein, J. A. Raine, S. Pina-Otey, S. Voloshynovskiy and T. Golling,
"Funnels: Exact maximum likelihood with dimensionality reduction",
arXiv:2112.08069, 2021. Each builder returns a `tfp_flows.distributions.Funnel`
(or, for `mlp_flow`, a flow) registered by name, so
`FlowModel.from_flow("funnel_nsf", ...)` trains it and `model.save` /
`keras.models.load_model` restore it. Every `log_prob` is exact.

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
The slice surjection is from D. Nielsen, P. Jaini, E. Hoogeboom, O. Winther and
M. Welling, "SurVAE Flows: Surjections to bridge the gap between VAEs and
flows", NeurIPS 2020.

Every builder takes `conditional_size=C`: with `C > 0` it returns a
conditional density `p(x | c)` (`log_prob(x, conditional_input=c)`), every
learned part conditioned on `c`: NSF/Glow layers' conditioners see `c`, the
funnel map `[x_minus, c]`, the decoder `[z, c]`; spline activations take
their knots from an MLP of `c`, the linear funnel maps add `V c`; where the
unconditional flow has a fixed `N(0, I)` after learned layers (a
one-dimensional latent, the F-MLP's innermost base) a conditional
elementwise spline of it becomes the base. `ActNorm` stays unconditional.
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


def _condition_size(conditional_size):
    return validation.positive_int(conditional_size, "conditional_size", allow_zero=True)


def _decoder(kind, dropped, latent, hidden_units, num_bins, bound, seed, dtype, cond):
    validation.one_of(kind, "decoder", ("flow", "gaussian"))
    if kind == "gaussian":
        return GaussianDecoder(dropped, latent, hidden_units, dtype=dtype.name,
                               conditional_size=cond)
    return FlowDecoder(dropped, latent, "neural_spline", 2, hidden_units, num_bins, bound,
                       seed=seed, dtype=dtype.name, conditional_size=cond)


def _conditional_base(size, cond, num_bins, bound, hidden_units, dtype, name="base_spline"):
    """`N(0, I)` through an elementwise RQ spline whose knots come from `MLP(c)`."""
    spline = ElementwiseSpline(size, cond, num_bins, bound, hidden_units, dtype=dtype,
                               name=name)
    return baselines.transformed([spline], size, dtype)


def _layer_split(num_layers, funnel_layer):
    num_layers = validation.positive_int(num_layers, "num_layers")
    funnel_layer = num_layers // 2 if funnel_layer is None else funnel_layer
    funnel_layer = validation.positive_int(funnel_layer, "funnel_layer", allow_zero=True)
    if funnel_layer >= num_layers:
        raise ValueError(f"`funnel_layer` must be in [0, num_layers) = [0, {num_layers}); "
                         f"got {funnel_layer}.")
    return funnel_layer, num_layers - funnel_layer - 1


def _flows_around(kind, event_size, latent, num_layers, funnel_layer, hidden_units, num_bins,
                  bound, seed, dtype, cond):
    """`(pre_bijector, base)`: the NSF / Glow steps before the funnel (on x) and after (on z)."""
    num_pre, num_post = _layer_split(num_layers, funnel_layer)

    def flow(size, layers, s):
        if kind == "spline":
            return baselines.neural_spline(size, layers, num_bins, bound, hidden_units,
                                           lu_linear=True, conditional_size=cond, seed=s,
                                           dtype=dtype)
        return baselines.glow(size, layers, hidden_units, conditional_size=cond, seed=s,
                              dtype=dtype)

    pre = flow(event_size, num_pre, seed).bijector if num_pre else None
    if num_post and latent >= 2:
        base = flow(latent, num_post, seed + 100)
    elif num_post and cond:  # a one-dimensional latent: p(z | c) by a conditional spline
        base = _conditional_base(latent, cond, num_bins, bound, hidden_units, dtype)
    else:
        base = baselines.standard_normal(latent, dtype)
    return pre, base


def _coupling_funnel(kind, event_size, latent_size, num_layers, funnel_layer, hidden_units,
                     num_bins, bound, decoder, decoder_hidden_units, seed, dtype, cond):
    event_size, latent = _sizes(event_size, latent_size)
    dtype, cond = validation.float_dtype(dtype), _condition_size(cond)
    dropped = event_size - latent
    pre, base = _flows_around(kind, event_size, latent, num_layers, funnel_layer, hidden_units,
                              num_bins, bound, seed, dtype, cond)
    # The map's conditioner sees [x_minus, c].
    if kind == "spline":
        f = ElementwiseSpline(latent, dropped + cond, num_bins, bound, hidden_units, dtype=dtype,
                              name="funnel_spline")
    else:
        f = ElementwiseAffine(latent, dropped + cond, hidden_units, dtype=dtype,
                              name="funnel_affine")
    dec = _decoder(decoder, dropped, latent, decoder_hidden_units or hidden_units, num_bins,
                   bound, seed, dtype, cond)
    return Funnel(event_size, dropped, base, dec, f, pre, conditional_size=cond)


@register_flow("funnel_nsf")
def funnel_nsf(event_size, latent_size=None, num_layers=4, funnel_layer=None, num_bins=8,
               bound=4.0, hidden_units=(64, 64), decoder="flow", decoder_hidden_units=None,
               seed=0, dtype="float32", conditional_size=0):
    """F-NSF: a neural spline flow with step `funnel_layer` replaced by a funnel.

    The funnel drops the first `event_size - latent_size` coordinates of its
    input (after an `LULinear`, so which ones is learned) and maps the rest
    through a rational-quadratic spline whose knots come from an MLP of the
    dropped ones. `decoder`: 'flow' (conditional NSF, paper's tabular choice)
    or 'gaussian'. `conditional_size=C`: a density `p(x | c)`. `log_prob` is
    exact.

    #### Examples

    ```python
    funnel = funnel_nsf(event_size=8)          # latent 6, funnel at step 2 of 4
    model = FlowModel.from_flow("funnel_nsf", event_size=8, latent_size=6)
    cond = funnel_nsf(8, conditional_size=3)   # cond.log_prob(x, conditional_input=c)
    ```
    """
    return _coupling_funnel("spline", event_size, latent_size, num_layers, funnel_layer,
                            hidden_units, num_bins, bound, decoder, decoder_hidden_units, seed,
                            dtype, conditional_size)


@register_flow("funnel_glow")
def funnel_glow(event_size, latent_size=None, num_layers=4, funnel_layer=None,
                hidden_units=(64, 64), decoder="flow", decoder_hidden_units=None, seed=0,
                dtype="float32", conditional_size=0):
    """F-Glow: Glow steps with one step replaced by an affine coupling funnel.

    `z = (x_plus - t(x_minus[, c])) exp(-s(x_minus[, c]))`; exact `log_prob`.
    """
    return _coupling_funnel("affine", event_size, latent_size, num_layers, funnel_layer,
                            hidden_units, 8, 4.0, decoder, decoder_hidden_units, seed, dtype,
                            conditional_size)


@register_flow("funnel_slice")
def funnel_slice(event_size, latent_size=None, num_layers=4, funnel_layer=None, num_bins=8,
                 bound=4.0, hidden_units=(64, 64), decoder="gaussian", seed=0,
                 dtype="float32", conditional_size=0):
    """The slice surjection (SurVAE; paper A.3): a funnel with F = identity.

    `log p(x) = log p_Z(x_plus) + log p_phi(x_minus | x_plus)` after the NSF
    layers on x (every term given `c` when `conditional_size > 0`). Exact.
    """
    event_size, latent = _sizes(event_size, latent_size)
    dtype, cond = validation.float_dtype(dtype), _condition_size(conditional_size)
    pre, base = _flows_around("spline", event_size, latent, num_layers, funnel_layer,
                              hidden_units, num_bins, bound, seed, dtype, cond)
    dec = _decoder(decoder, event_size - latent, latent, hidden_units, num_bins, bound, seed,
                   dtype, cond)
    return Funnel(event_size, event_size - latent, base, dec, None, pre, conditional_size=cond)


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
               seed=0, dtype="float32", conditional_size=0):
    """F-MLP: `event_size -> latent_sizes[0] -> ... -> latent_sizes[-1]` funnels.

    Layer i: `z = R x_plus + W' x_minus + b` (`FunnelLinear`, R in LU form), a
    Gaussian decoder for `x_minus`; a fixed random permutation before the first
    layer and a learnable elementwise RQ spline (`num_bins` bins on
    `[-bound, bound]`) as the activation between layers. The innermost base is
    `N(0, I)`. Exact `log_prob`.

    With `conditional_size=C > 0`: `z = R x_plus + W' x_minus + V c + b`, the
    decoders see `c`, the activations' knots come from an MLP of `c`, and the
    innermost base is a conditional elementwise spline of `N(0, I)`.
    """
    sizes = _mlp_sizes(event_size, latent_sizes)
    dtype, cond = validation.float_dtype(dtype), _condition_size(conditional_size)
    dist = (_conditional_base(sizes[-1], cond, num_bins, bound, hidden_units, dtype) if cond
            else baselines.standard_normal(sizes[-1], dtype))
    for i in range(len(sizes) - 2, -1, -1):
        size, latent = sizes[i], sizes[i + 1]
        pre = (random_permutation(size, seed) if i == 0 else
               ElementwiseSpline(size, cond, num_bins, bound, hidden_units, dtype=dtype,
                                 name=f"activation_{i}"))
        f = FunnelLinear(latent, size - latent, seed=seed + i, dtype=dtype,
                         name=f"funnel_linear_{i}", extra_conditional_size=cond)
        dec = GaussianDecoder(size - latent, latent, hidden_units, dtype=dtype.name,
                              name=f"decoder_{i}", conditional_size=cond)
        dist = Funnel(size, size - latent, dist, dec, f, pre, name=f"funnel_mlp_{i}",
                      conditional_size=cond)
    return dist


@register_flow("mlp_flow")
def mlp_flow(event_size, num_layers=2, num_bins=5, bound=4.0, seed=0, dtype="float32",
             conditional_size=0, hidden_units=(64, 64)):
    """The F-MLP's dimension-preserving baseline: `num_layers` of `LULinear` (plus
    bias-free) and a learnable elementwise RQ spline activation.

    With `conditional_size=C > 0` the activations' knots come from an MLP of
    `c` (`hidden_units`) and a conditional elementwise affine map
    `(u - t(c)) exp(-s(c))` follows the last `LULinear` (so even one layer is
    conditional); `log_prob(x, conditional_input=c)` stays exact.
    """
    event_size = validation.positive_int(event_size, "event_size")
    num_layers = validation.positive_int(num_layers, "num_layers")
    dtype, cond = validation.float_dtype(dtype), _condition_size(conditional_size)
    bijectors = [random_permutation(event_size, seed)]
    for i in range(num_layers):
        if i > 0:
            bijectors.append(ElementwiseSpline(event_size, cond, num_bins, bound, hidden_units,
                                               dtype=dtype, name=f"activation_{i}"))
        bijectors.append(LULinear(event_size, seed=seed + i, dtype=dtype))
    if cond:
        bijectors.append(ElementwiseAffine(event_size, cond, hidden_units, dtype=dtype,
                                           name="conditional_affine"))
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
                neighbourhood=1, seed=0, dtype="float32", conditional_size=0):
    """Convolutional funnels on flat images `[..., H*W*C]` (row-major `[H, W, C]`).

    Each funnel cuts its input into `kernel_size` tiles (stride = width), keeps
    the bottom-right element of every tile, and maps it through a shared
    kernel `z_t = R x_plus_t + W' x_minus_t + b` (`FunnelLinear`, so
    `log|det| = num_tiles log|det R|`); a `TileGaussianDecoder` models each
    tile's dropped entries from its latent neighbourhood. `num_funnels` funnels
    shrink every side by the kernel each time; then `num_layers` NSF layers act
    on the final latent. `actnorm=True` standardises the input first
    (data-dependent init). Exact `log_prob`. With `conditional_size=C > 0`,
    `p(x | c)`: the kernels add `V c`, the tile decoders and NSF layers see `c`.

    #### Examples

    ```python
    # 8x8 digits (flat [N, 64]) -> 16 -> 4 latents, then NSF on the 4.
    model = FlowModel.from_flow("funnel_conv", image_shape=[8, 8], num_funnels=2)
    ```
    """
    shapes, kernel = _conv_shapes(image_shape, kernel_size, num_funnels)
    dtype, cond = validation.float_dtype(dtype), _condition_size(conditional_size)
    num_layers = validation.positive_int(num_layers, "num_layers", allow_zero=True)
    latent = int(np.prod(shapes[-1]))
    if num_layers and latent >= 2:
        dist = baselines.neural_spline(latent, num_layers, num_bins, bound, hidden_units,
                                       conditional_size=cond, seed=seed, dtype=dtype)
    elif num_layers and cond:
        dist = _conditional_base(latent, cond, num_bins, bound, hidden_units, dtype)
    else:
        dist = baselines.standard_normal(latent, dtype)
    per_tile = kernel[0] * kernel[1] - 1
    for i in range(len(shapes) - 2, -1, -1):
        shape, (lh, lw, c) = shapes[i], shapes[i + 1]
        dropped, _ = conv_tile_indices(shape, kernel)
        f = FunnelLinear(c, per_tile * c, num_tiles=lh * lw, seed=seed + i, dtype=dtype,
                         name=f"conv_funnel_{i}", extra_conditional_size=cond)
        dec = TileGaussianDecoder((lh, lw, c), per_tile * c, neighbourhood,
                                                  decoder_hidden_units, dtype=dtype.name,
                                                  name=f"tile_decoder_{i}",
                                                  conditional_size=cond)
        size = int(np.prod(shape))
        pre = ActNorm(size, dtype=dtype) if (i == 0 and actnorm) else None
        dist = Funnel(size, dropped, dist, dec, f, pre, name=f"conv_funnel_{i}",
                      conditional_size=cond)
    return dist


__all__ = ["conv_tile_indices", "default_latent_size", "funnel_conv", "funnel_glow",
           "funnel_mlp", "funnel_nsf", "funnel_slice", "mlp_flow"]
