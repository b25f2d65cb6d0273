"""Baseline flows from TFP bijectors with Keras 3 conditioners.

Every benchmark compares against these, and the funnel, augmentation and LGF
families wrap them. Each builder returns a `tfd.TransformedDistribution` on
`R^event_size` with a standard normal base; conditioners' output layers start
at zero, so a new flow is the identity map (plus its permutations) and the
initial density is the base density.

Chains are listed in the density direction (data first): `tfb.Chain([b1, b2])`
maps data `x` to `b2^-1(b1^-1(x))`.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.bijectors.actnorm import ActNorm
from tfp_flows.bijectors.conditioners import (
    MADEConditioner,
)
from tfp_flows.bijectors.coupling import check_coupling_event_size, coupling_layer
from tfp_flows.bijectors.lu_linear import LULinear
from tfp_flows.bijectors.one_pass import OnePassMaskedAutoregressiveFlow
from tfp_flows.bijectors.permute import block_permutations, reverse_permutation
from tfp_flows.flows.registry import register_flow
from tfp_flows.internal import validation
from tfp_flows.internal.contract import mark_conditional

tfb = tfp.bijectors
tfd = tfp.distributions


def standard_normal(event_size, dtype=tf.float32):
    """`N(0, I)` on `R^event_size` (batch shape `[]`)."""
    return tfd.MultivariateNormalDiag(loc=tf.zeros([event_size], dtype=dtype))


def _common(event_size, num_layers, dtype, coupling=True, conditional_size=0):
    if coupling:
        event_size, conditional_size = check_coupling_event_size(event_size, conditional_size)
    event_size = validation.positive_int(event_size, "event_size")
    num_layers = validation.positive_int(num_layers, "num_layers")
    validation.positive_int(conditional_size, "conditional_size", allow_zero=True)
    return event_size, num_layers, validation.float_dtype(dtype)


def transformed(bijectors, event_size, dtype, base=None):
    """`TransformedDistribution(base, Chain(bijectors))`, bijectors in density order."""
    base = standard_normal(event_size, dtype) if base is None else base
    return tfd.TransformedDistribution(base, tfb.Chain(list(bijectors)))


@register_flow("real_nvp")
def real_nvp(event_size, num_layers=4, hidden_units=(64, 64), activation="relu", residual=False,
             conditional_size=0, log_scale_bound=3.0, actnorm=False, seed=0, dtype="float32",
             base=None):
    """RealNVP (Dinh et al., 2017): affine couplings between fixed permutations.

    Permutations follow the Ferumal paper's scheme (random, then reverse, alternating).
    `actnorm=True` puts an `ActNorm` before each coupling.
    """
    event_size, num_layers, dtype = _common(event_size, num_layers, dtype,
                                            conditional_size=conditional_size)
    perms = block_permutations(event_size, (num_layers + 1) // 2, seed)
    bijectors = []
    for i in range(num_layers):
        if actnorm:
            bijectors.append(ActNorm(event_size, dtype=dtype))
        bijectors.append(perms[i])
        bijectors.append(coupling_layer(
            event_size, "affine", conditional_size, f"coupling_{i}",
            hidden_units=hidden_units, activation=activation, residual=residual,
            log_scale_bound=log_scale_bound, dtype=dtype.name))
    return transformed(bijectors, event_size, dtype, base)


@register_flow("glow")
def glow(event_size, num_layers=4, hidden_units=(64, 64), activation="relu", residual=False,
         conditional_size=0, log_scale_bound=3.0, seed=0, dtype="float32", base=None):
    """Glow-style flow (Kingma & Dhariwal, 2018) for vectors: per step ActNorm,
    an LU-parameterised invertible linear map, and an affine coupling."""
    event_size, num_layers, dtype = _common(event_size, num_layers, dtype,
                                            conditional_size=conditional_size)
    bijectors = []
    for i in range(num_layers):
        bijectors += [
            ActNorm(event_size, dtype=dtype),
            LULinear(event_size, seed=seed + i, dtype=dtype),
            coupling_layer(event_size, "affine", conditional_size, f"coupling_{i}",
                           hidden_units=hidden_units, activation=activation, residual=residual,
                           log_scale_bound=log_scale_bound, dtype=dtype.name),
        ]
    return transformed(bijectors, event_size, dtype, base)


@register_flow("maf")
def maf(event_size, num_layers=5, hidden_units=(64, 64), activation="relu", conditional_size=0,
        log_scale_bound=3.0, dtype="float32", base=None):
    """Masked autoregressive flow (Papamakarios et al., 2017) with Keras 3 MADEs,
    the order reversed between layers. Density in one pass; sampling takes D."""
    event_size, num_layers, dtype = _common(event_size, num_layers, dtype, coupling=False,
                                            conditional_size=conditional_size)
    bijectors = []
    for i in range(num_layers):
        if i > 0:
            bijectors.append(reverse_permutation(event_size))
        cond = MADEConditioner(event_size, hidden_units, activation, conditional_size,
                               log_scale_bound, dtype=dtype.name)
        bij = OnePassMaskedAutoregressiveFlow(shift_and_log_scale_fn=cond, name=f"maf_{i}")
        bijectors.append(mark_conditional(bij, conditional_size) if conditional_size else bij)
    return transformed(bijectors, event_size, dtype, base)


@register_flow("neural_spline")
def neural_spline(event_size, num_layers=4, num_bins=8, bound=4.0, hidden_units=(64, 64),
                  activation="relu", residual=False, conditional_size=0, lu_linear=False,
                  seed=0, dtype="float32", base=None):
    """Rational-quadratic spline coupling flow (NSF-C, Durkan et al., 2019).

    Splines act on `[-bound, bound]` and are the identity outside. With
    `lu_linear=True` an `LULinear` replaces the fixed permutations (as in NSF).
    """
    event_size, num_layers, dtype = _common(event_size, num_layers, dtype,
                                            conditional_size=conditional_size)
    perms = block_permutations(event_size, (num_layers + 1) // 2, seed)
    bijectors = []
    for i in range(num_layers):
        bijectors.append(LULinear(event_size, seed=seed + i, dtype=dtype)
                         if lu_linear else perms[i])
        bijectors.append(coupling_layer(
            event_size, "spline", conditional_size, f"spline_coupling_{i}",
            num_bins=num_bins, bound=bound, hidden_units=hidden_units, activation=activation,
            residual=residual, dtype=dtype.name))
    return transformed(bijectors, event_size, dtype, base)
