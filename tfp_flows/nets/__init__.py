"""Keras 3 layers used as conditioners and parameter holders."""

from tfp_flows.nets.gaussian import GaussianHead
from tfp_flows.nets.kernels import InducingPoints, KernelMachine
from tfp_flows.nets.made import MADE, made_degrees, made_masks
from tfp_flows.nets.mlp import MLP, Parameters
from tfp_flows.nets.ode_net import ODENet

__all__ = ["MADE", "MLP", "Parameters", "made_degrees", "made_masks"]
__all__ += ["InducingPoints", "KernelMachine"]
__all__ += ["ODENet"]
__all__ += ["GaussianHead"]
