"""Ready-made FFJORD flow: `N(0, I)` base, optional ActNorm, one or more FFJORD blocks."""

import tensorflow as tf

from tfp_flows.bijectors.actnorm import ActNorm
from tfp_flows.bijectors.ffjord import FFJORD
from tfp_flows.flows.baselines import transformed
from tfp_flows.flows.registry import register_flow
from tfp_flows.internal import validation
from tfp_flows.nets.ode_net import ODENet


@register_flow("ffjord")
def ffjord(event_size, num_blocks=1, hidden_units=(64, 64), activation="tanh",
           conditional_size=0, actnorm=False, solver="dopri5", rtol=1e-5, atol=1e-5,
           num_steps=8, max_num_steps=1000, trace="exact", num_probes=1, probe="rademacher",
           gradient="adjoint", adjoint_options=None, control_log_det=None, t1=1.0,
           dtype="float32", base=None):
    """FFJORD (Grathwohl et al., 2019) on `R^event_size` with a standard normal base.

    In the density direction the data pass, per block, an `ActNorm` (if
    `actnorm=True`; data-dependent initialisation via
    `FlowModel.initialize_from_data`) and then an `FFJORD` bijector whose vector
    field is an `ODENet` (concat-squash layers, zero-initialised output, so the
    flow starts at the identity). Solver, trace and gradient options are those
    of `tfp_flows.bijectors.FFJORD`; blocks are named `ffjord_0`, `ffjord_1`, ...
    so per-call keyword arguments (e.g. `seed`) can be routed to each.

    `log_prob` is exact up to solver error with `trace='exact'`, an unbiased
    estimate with `trace='hutchinson'` (switch with
    `tfp_flows.flows.ffjord_blocks(flow)` and set `.trace`). Train with
    `tfp_flows.keras.RNODE` to pass per-step probe seeds and add the RNODE
    regularisers.

    #### Examples

    ```python
    model = tfp_flows.keras.FlowModel.from_flow("ffjord", event_size=2,
                                                objective=tfp_flows.keras.RNODE(0.01, 0.01),
                                                trace="hutchinson")
    model.compile(keras.optimizers.Adam(1e-3), jit_compile=True)
    model.fit(x_train, batch_size=512, epochs=10)
    ```
    """
    event_size = validation.positive_int(event_size, "event_size")
    num_blocks = validation.positive_int(num_blocks, "num_blocks")
    dtype = validation.float_dtype(dtype)
    bijectors = []
    for i in range(num_blocks):
        if actnorm:
            bijectors.append(ActNorm(event_size, dtype=dtype, name=f"act_norm_{i}"))
        net = ODENet(event_size, hidden_units, activation, conditional_size, dtype=dtype.name)
        bijectors.append(FFJORD(
            net, t1=t1, solver=solver, rtol=rtol, atol=atol, num_steps=num_steps,
            max_num_steps=max_num_steps, trace=trace, num_probes=num_probes, probe=probe,
            gradient=gradient, adjoint_options=adjoint_options,
            control_log_det=control_log_det, name=f"ffjord_{i}"))
    return transformed(bijectors, event_size, dtype, base)


def ffjord_blocks(obj):
    """All `FFJORD` bijectors in a distribution or bijector (e.g. to set `.trace`)."""
    if isinstance(obj, FFJORD):
        return [obj]
    found = []
    for attr in ("bijector", "bijectors"):
        value = getattr(obj, attr, None)
        for part in value if isinstance(value, (list, tuple)) else [value]:
            if part is not None and part is not obj:
                found += ffjord_blocks(part)
    return found


__all__ = ["ffjord", "ffjord_blocks"]

del tf
