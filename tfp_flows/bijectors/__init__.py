"""Bijectors (true bijections, `tfb.Bijector` subclasses) and their building blocks."""

from tfp_flows.bijectors.actnorm import ActNorm
from tfp_flows.bijectors.base import KerasBijector, keras_layer_name
from tfp_flows.bijectors.conditioners import (
    AffineCouplingConditioner,
    MADEConditioner,
    SplineCouplingConditioner,
)
from tfp_flows.bijectors.continuously_indexed import ContinuouslyIndexed
from tfp_flows.bijectors.ffjord import FFJORD, FFJORDSolution
from tfp_flows.bijectors.fixed_conditional import FixedConditional
from tfp_flows.bijectors.funnel_maps import (
    ElementwiseAffine,
    ElementwiseSpline,
    FunnelLinear,
)
from tfp_flows.bijectors.kernel_coupling import KernelCoupling
from tfp_flows.bijectors.lu_linear import LULinear
from tfp_flows.bijectors.permute import (
    Permute,
    block_permutations,
    random_permutation,
    reverse_permutation,
)
from tfp_flows.bijectors.spline import StableRationalQuadraticSpline
from tfp_flows.internal.contract import (
    conditional_size,
    initialize_from_data,
    is_conditional,
    log_prob_kind,
    mark_conditional,
    route,
)
from tfp_flows.internal.math import soft_clamp

__all__ = [
    "ActNorm", "AffineCouplingConditioner", "LULinear", "MADEConditioner",
    "SplineCouplingConditioner", "block_permutations",
    "conditional_size", "initialize_from_data", "is_conditional", "log_prob_kind",
    "mark_conditional", "route",
    "random_permutation", "reverse_permutation", "soft_clamp",
]
__all__ += ["KernelCoupling"]
__all__ += ["ContinuouslyIndexed", "FixedConditional"]
__all__ += ["ElementwiseAffine", "ElementwiseSpline", "FunnelLinear"]
__all__ += ["FFJORD", "FFJORDSolution"]
__all__ += ["KerasBijector", "keras_layer_name"]
__all__ += ["StableRationalQuadraticSpline"]
__all__ += ["Permute"]
