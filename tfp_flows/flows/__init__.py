"""Ready-made flows (baselines and, from the family modules, their flows) and the registry."""

from tfp_flows.flows.augmented import augmented_real_nvp, marginalizing_flow, rblock_real_nvp
from tfp_flows.flows.baselines import (
    glow,
    maf,
    neural_spline,
    real_nvp,
    standard_normal,
    transformed,
)
from tfp_flows.flows.ferumal import ferumal, ferumal_num_params
from tfp_flows.flows.ffjord import ffjord, ffjord_blocks, with_trace
from tfp_flows.flows.funnels import (
    funnel_conv,
    funnel_glow,
    funnel_mlp,
    funnel_nsf,
    funnel_slice,
    mlp_flow,
)
from tfp_flows.flows.lgf import lgf_maf, lgf_real_nvp
from tfp_flows.flows.registry import (
    available_flows,
    build_flow,
    describe_flow,
    flow_builder,
    register_flow,
)

__all__ = ["available_flows", "build_flow", "describe_flow", "flow_builder", "glow", "maf",
           "neural_spline", "real_nvp", "register_flow", "standard_normal", "transformed"]
__all__ += ["augmented_real_nvp", "marginalizing_flow", "rblock_real_nvp"]
__all__ += ["ferumal", "ferumal_num_params"]
__all__ += ["lgf_maf", "lgf_real_nvp"]
__all__ += ["funnel_conv", "funnel_glow", "funnel_mlp", "funnel_nsf", "funnel_slice", "mlp_flow"]
__all__ += ["ffjord", "ffjord_blocks", "with_trace"]
