"""Named constructors of ready-made flows.

`FlowModel.from_flow(name, **kwargs)`, the CLI and the benchmarks build flows
by name; a model built this way saves and loads with `model.save` /
`keras.models.load_model` (its config is the name and the keyword arguments).
`flow_builder(name)` returns the registered constructor and
`describe_flow(name)` its summary and arguments (nothing is built).
"""

import inspect
import re
from typing import NamedTuple

_FLOWS = {}
# A sentence ends at ., ! or ? followed by white space, except after these abbreviations.
_ABBREVIATIONS = ("e.g.", "i.e.", "et al.", "cf.", "vs.", "Fig.", "Sec.", "Eq.", "approx.")
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


class FlowInfo(NamedTuple):
    """What `describe_flow` returns.

    Attributes:
      name: the registered name.
      summary: the first sentence of the builder's docstring ("" if none).
      arguments: the builder's parameters as `"name"` / `"name=default"` strings.
      conditional: whether the builder accepts `conditional_size` (a flow
        conditioned on an input `c` of that size).
    """

    name: str
    summary: str
    arguments: tuple
    conditional: bool


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


def first_sentence(doc):
    """The first sentence of a docstring's first paragraph, on one line."""
    paragraph = inspect.cleandoc(doc or "").split("\n\n")[0]
    text = " ".join(paragraph.split())
    for match in _SENTENCE_END.finditer(text):
        head = text[:match.end()]
        # Not inside `code` (an odd number of backticks before), not an abbreviation.
        if head.count("`") % 2 == 0 and not head.endswith(_ABBREVIATIONS):
            return head
    return text


def describe_flow(name):
    """`FlowInfo` of the registered flow `name`: summary, arguments, conditional or not."""
    fn = flow_builder(name)
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins / C callables have no signature
        params = ()
    arguments, names = [], set()
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            arguments.append(("*" if p.kind == p.VAR_POSITIONAL else "**") + p.name)
            continue
        names.add(p.name)
        arguments.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    return FlowInfo(name, first_sentence(inspect.getdoc(fn)), tuple(arguments),
                    "conditional_size" in names)
