"""Generic checks every bijector (`testing.bijectors`) and every ready-made flow
(`testing.flows`) of the library must pass, and their registries."""

from tfp_flows.testing.bijectors import (
    BATCH_SHAPES,
    BIJECTORS,
    CHECKS,
    MODES,
    BijectorCase,
    build,
    check_batch_shapes,
    check_gradients,
    check_jacobian,
    check_log_det_consistency,
    check_round_trip,
    compile_fn,
    inputs,
    keras_weights,
    perturb_weights,
    run_checks,
)
from tfp_flows.testing.flows import FLOW_CHECKS, FLOWS, FlowCase, run_flow_checks

__all__ = ["BATCH_SHAPES", "BIJECTORS", "CHECKS", "MODES", "BijectorCase", "build",
           "check_batch_shapes", "check_gradients", "check_jacobian",
           "check_log_det_consistency", "check_round_trip", "compile_fn", "inputs",
           "keras_weights", "perturb_weights", "run_checks"]
__all__ += ["FLOWS", "FLOW_CHECKS", "FlowCase", "run_flow_checks"]
