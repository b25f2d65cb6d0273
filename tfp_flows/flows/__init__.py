"""Ready-made flows (baselines and, from the family modules, their flows) and the registry."""

from tfp_flows.flows.baselines import glow, maf, neural_spline, real_nvp, standard_normal, transformed
from tfp_flows.flows.registry import available_flows, build_flow, register_flow

__all__ = ["available_flows", "build_flow", "glow", "maf", "neural_spline", "real_nvp",
           "register_flow", "standard_normal", "transformed"]
