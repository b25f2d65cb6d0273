"""Keras 3 layers used as conditioners and parameter holders."""

from tfp_flows.nets.made import MADE, made_degrees, made_masks
from tfp_flows.nets.mlp import MLP, Parameters

__all__ = ["MADE", "MLP", "Parameters", "made_degrees", "made_masks"]
