"""Keras 3 training path: `FlowModel`, its objectives, and the one pipeline (`train`, `evaluate`,
`count_parameters`, from `tfp_flows.keras.training`)."""

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

from tfp_flows.keras.training import (  # noqa: E402
    DEFAULT_INIT_ROWS,
    Evaluation,
    TrainResult,
    count_parameters,
    evaluate,
    train,
)

__all__ += ["DEFAULT_INIT_ROWS", "Evaluation", "TrainResult", "count_parameters", "evaluate",
            "train"]
