"""Keras 3 training path: `FlowModel`, its objectives, and the one pipeline
(`tfp_flows.keras.train`: `fit`, `evaluate`, `count_parameters`)."""

from tfp_flows.keras.model import FlowModel
from tfp_flows.keras.objectives import (
    ELBO,
    ImportanceWeighted,
    MaximumLikelihood,
    Objective,
    ReverseKL,
)

__all__ = ["ELBO", "FlowModel", "ImportanceWeighted", "MaximumLikelihood", "Objective",
           "ReverseKL"]

from tfp_flows.keras.rnode import RNODE  # noqa: E402

__all__ += ["RNODE"]

from tfp_flows.keras.distributed import fit_distributed, needs_own_loop  # noqa: E402

__all__ += ["fit_distributed", "needs_own_loop"]

from tfp_flows.keras.guard import GuardNonFinite, NonFiniteLossError  # noqa: E402

__all__ += ["GuardNonFinite", "NonFiniteLossError"]

from tfp_flows.keras import train  # noqa: E402  (the pipeline: train.fit / evaluate / ...)

__all__ += ["train"]
