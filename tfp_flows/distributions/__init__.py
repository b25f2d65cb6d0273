"""Distributions for the families that are not bijections (funnel, augmentation, LGF)."""

from tfp_flows.distributions.base import FlowDistribution
from tfp_flows.distributions.importance import importance_sampled_log_prob, repeat_rows

__all__ = ["FlowDistribution", "importance_sampled_log_prob", "repeat_rows"]
