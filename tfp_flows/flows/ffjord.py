"""Ready-made FFJORD flow: `N(0, I)` base, optional ActNorm, one or more FFJORD blocks."""

from tfp_flows.bijectors.actnorm import ActNorm
from tfp_flows.bijectors.ffjord import FFJORD
from tfp_flows.flows.baselines import transformed
from tfp_flows.flows.registry import register_flow
from tfp_flows.internal import contract, validation
from tfp_flows.nets.ode_net import ODENet
from tfp_flows.ode import trace as trace_lib


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
    estimate with `trace='hutchinson'` (switch the same weights with
    `tfp_flows.flows.with_trace(flow, "exact")`, or `FlowModel.with_trace`). Train with
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
    """All `FFJORD` bijectors in a distribution or bijector, in chain order.

    Walks `tfb.Chain`, `tfb.Invert` and `tfd.TransformedDistribution`; a
    library distribution (e.g. a funnel) is not looked into.
    """
    if isinstance(obj, FFJORD):
        return [obj]
    return [block for part in contract.parts(obj) for block in ffjord_blocks(part)]


def with_trace(obj, trace):
    """`obj` (a distribution or bijector) with every FFJORD block using `trace`.

    Rebuilds the TFP composites around the blocks (`tfb.Chain`, `tfb.Invert`,
    `tfd.TransformedDistribution`, with TFP's `.copy(...)`); each block is
    replaced by `block.with_trace(trace)`, which shares its vector field, so
    the result has the same weights, and `contract.log_prob_kind` reports the
    new trace ("exact" or "unbiased estimate"). `obj` itself is unchanged.

    #### Examples

    ```python
    flow = tfp_flows.flows.ffjord(2, trace="hutchinson")
    exact = tfp_flows.flows.with_trace(flow, "exact")
    exact.log_prob(x)          # same weights, exact up to solver error
    ```

    Raises:
      ValueError: `trace` is not 'exact' or 'hutchinson', or `obj` has no FFJORD block.
    """
    trace = trace_lib.check_trace(trace)
    if not ffjord_blocks(obj):
        raise ValueError("`with_trace` needs a distribution or bijector with FFJORD blocks "
                         f"(through Chain / Invert / TransformedDistribution); got "
                         f"{getattr(obj, 'name', type(obj).__name__)!r} with none.")
    return contract.rebuild(obj, lambda part: (
        part.with_trace(trace) if isinstance(part, FFJORD) and part.trace != trace else part))


__all__ = ["ffjord", "ffjord_blocks", "with_trace"]
