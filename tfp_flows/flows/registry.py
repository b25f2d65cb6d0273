"""Named constructors of ready-made flows.

`FlowModel.from_flow(name, **kwargs)`, the CLI and the benchmarks build flows
by name; a model built this way saves and loads with `model.save` /
`keras.models.load_model` (its config is the name and the keyword arguments).
"""

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
    return sorted(_FLOWS)


def build_flow(name, **kwargs):
    """Builds the registered flow `name` with `kwargs`."""
    if name not in _FLOWS:
        raise ValueError(f"Unknown flow {name!r}; available: {', '.join(available_flows())}.")
    return _FLOWS[name](**kwargs)
