"""Named constructors of ready-made flows.

`FlowModel.from_flow(name, **kwargs)`, the CLI and the benchmarks build flows
by name; a model built this way saves and loads with `model.save` /
`keras.models.load_model` (its config is the name and the keyword arguments).
`flow_builder(name)` returns the registered constructor and
`describe_flow(name)` its summary and arguments (nothing is built).
`FlowInfo` and the description rules live in the TensorFlow-free
`tfp_flows.internal.flow_catalog`, which also holds a static copy of every
built-in flow's description for `tfp-flows list`.
"""

from tfp_flows.internal.flow_catalog import FlowInfo, describe, first_sentence

__all__ = ["FlowInfo", "available_flows", "build_flow", "describe_flow", "first_sentence",
           "flow_builder", "register_flow"]

_FLOWS = {}


def register_flow(name):
    """Decorator: registers `fn(**kwargs) -> tfd.Distribution` under `name`."""

    def wrap(fn):
        if name in _FLOWS and _FLOWS[name] is not fn:
            raise ValueError(f"A flow named {name!r} is already registered.")
        _FLOWS[name] = fn
        return fn

    return wrap


def available_flows():
    """Sorted names of the registered flows."""
    return sorted(_FLOWS)


def flow_builder(name):
    """The constructor registered under `name`; ValueError naming the known flows if none."""
    if name not in _FLOWS:
        raise ValueError(f"Unknown flow {name!r}; available: {', '.join(available_flows())}.")
    return _FLOWS[name]


def build_flow(name, **kwargs):
    """Builds the registered flow `name` with `kwargs`."""
    return flow_builder(name)(**kwargs)


def describe_flow(name):
    """`FlowInfo` of the registered flow `name`: summary, arguments, conditional or not."""
    return describe(name, flow_builder(name))
