"""Distributions for the families that are not bijections (funnel, augmentation, LGF)."""

from tfp_flows.distributions.augmented import Augmented
from tfp_flows.distributions.base import FlowDistribution
from tfp_flows.distributions.funnel import Funnel, sample_at_temperature
from tfp_flows.distributions.funnel_decoders import (
    FlowDecoder,
    GaussianDecoder,
    TileGaussianDecoder,
)
from tfp_flows.distributions.importance import importance_sampled_log_prob, repeat_rows
from tfp_flows.distributions.joint import FunnelJointBijector, LatentJoint
from tfp_flows.distributions.lgf import LGF
from tfp_flows.distributions.proposals import GaussianProposal, StandardNormalProposal
from tfp_flows.internal.contract import log_prob, sample

__all__ = ["FlowDistribution", "importance_sampled_log_prob", "log_prob", "repeat_rows", "sample"]
__all__ += ["Augmented", "GaussianProposal", "StandardNormalProposal"]
__all__ += ["LGF"]
__all__ += ["FlowDecoder", "Funnel", "GaussianDecoder", "TileGaussianDecoder",
            "sample_at_temperature"]
__all__ += ["FunnelJointBijector", "LatentJoint"]
