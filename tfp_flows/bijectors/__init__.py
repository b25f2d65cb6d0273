"""Bijectors (true bijections, `tfb.Bijector` subclasses) and their building blocks."""

from tfp_flows.bijectors.actnorm import ActNorm
from tfp_flows.bijectors.base import KerasBijector, keras_layer_name
from tfp_flows.bijectors.conditioners import (
    AffineCouplingConditioner,
    MADEConditioner,
    SplineCouplingConditioner,
    soft_clamp,
)
from tfp_flows.bijectors.continuously_indexed import (
    ContinuouslyIndexed,
    FixedIndex,
    with_fixed_index,
)
from tfp_flows.bijectors.ffjord import FFJORD, FFJORDSolution
from tfp_flows.bijectors.funnel_maps import (
    ElementwiseAffine,
    ElementwiseSpline,
    FixedConditional,
    FunnelLinear,
)
from tfp_flows.bijectors.kernel_coupling import KernelCoupling
from tfp_flows.bijectors.lu_linear import LULinear
from tfp_flows.bijectors.permute import block_permutations, random_permutation, reverse_permutation
from tfp_flows.bijectors.traversal import (
    conditional_kwargs,
    initialize_from_data,
    is_conditional,
    log_prob,
    mark_conditional,
)

__all__ = [
    "ActNorm", "AffineCouplingConditioner", "LULinear", "MADEConditioner",
    "SplineCouplingConditioner", "block_permutations", "conditional_kwargs",
    "initialize_from_data", "is_conditional", "log_prob", "mark_conditional",
    "random_permutation", "reverse_permutation", "soft_clamp",
]
__all__ += ["KernelCoupling"]
__all__ += ["ContinuouslyIndexed", "FixedIndex", "with_fixed_index"]
__all__ += ["ElementwiseAffine", "ElementwiseSpline", "FixedConditional", "FunnelLinear"]
__all__ += ["FFJORD", "FFJORDSolution"]
__all__ += ["KerasBijector", "keras_layer_name"]
