"""The public API is documented: docstrings everywhere, and docs/api.md renders every name.

The public API is `tfp_flows.__all__` (the subpackages) and, in each public
module, its `__all__` (modules listed there are public too, e.g.
`tfp_flows.keras.train`). Every public class and function has a docstring, and
so does every public method and property a public class defines (its own, or
the one it overrides). docs/api.md renders each public name with mkdocstrings:
`::: module.name`, or a `::: module` block whose `members:` list names it.
"""

import importlib
import inspect
import pathlib
import re

import pytest

import tfp_flows

API_PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "api.md"


def public_modules():
    """`{module name: module}` of every public module, each with an `__all__`."""
    found, todo = {}, [f"tfp_flows.{name}" for name in tfp_flows.__all__]
    while todo:
        name = todo.pop()
        module = importlib.import_module(name)
        found[name] = module
        for member in getattr(module, "__all__", ()):
            obj = getattr(module, member)
            if inspect.ismodule(obj) and obj.__name__.startswith("tfp_flows."):
                todo.append(obj.__name__)
    return found


MODULES = public_modules()


def public_names():
    """`[(module name, member name, object)]` of every public class, function and constant."""
    names = []
    for module_name, module in sorted(MODULES.items()):
        for member in module.__all__:
            obj = getattr(module, member)
            if not inspect.ismodule(obj):
                names.append((module_name, member, obj))
    return names


def _methods(cls):
    """Public methods and properties `cls` itself defines: `[(name, function)]`."""
    out = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            out.append((name, value.fget))
        elif isinstance(value, staticmethod | classmethod):
            out.append((name, value.__func__))
        elif inspect.isfunction(value):
            out.append((name, value))
    return out


def test_every_public_module_declares_all():
    missing = [name for name, module in MODULES.items() if not hasattr(module, "__all__")]
    assert not missing, f"public modules without __all__: {missing}"
    assert {"tfp_flows.keras.train", "tfp_flows.plotting", "tfp_flows.evaluation"} <= set(MODULES)


def test_every_public_class_function_and_method_has_a_docstring():
    missing = []
    for module_name, member, obj in public_names():
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not inspect.getdoc(obj):
            missing.append(f"{module_name}.{member}")
        if inspect.isclass(obj):
            for name, fn in _methods(obj):
                if not (fn.__doc__ or inspect.getdoc(getattr(obj, name, None))):
                    missing.append(f"{module_name}.{member}.{name}")
    assert not missing, "public API without a docstring:\n" + "\n".join(missing)


def _rendered():
    """`(targets of ::: lines, {module: members listed under its ::: block})` of api.md."""
    text = API_PAGE.read_text()
    targets, members = set(), {}
    blocks = re.split(r"^(?=::: )", text, flags=re.M)
    for block in blocks:
        match = re.match(r"::: ([\w.]+)", block)
        if not match:
            continue
        target = match.group(1)
        targets.add(target)
        listed = re.search(r"members:\s*\[([^\]]*)\]", block)
        if listed:
            members.setdefault(target, set()).update(
                m.strip() for m in listed.group(1).replace("\n", " ").split(",") if m.strip())
    return targets, members


def test_api_page_renders_every_public_module_and_name():
    targets, members = _rendered()
    missing = []
    for module_name in MODULES:
        if not any(t == module_name or t.startswith(module_name + ".") for t in targets):
            missing.append(module_name)
    for module_name, member, _ in public_names():
        if f"{module_name}.{member}" not in targets and member not in members.get(module_name,
                                                                                 ()):
            missing.append(f"{module_name}.{member}")
    assert not missing, "docs/api.md does not render:\n" + "\n".join(missing)


@pytest.mark.parametrize("target", sorted(_rendered()[0]))
def test_api_page_targets_exist(target):
    module_name, _, attr = target.rpartition(".")
    try:
        module = importlib.import_module(target)
        assert module is not None
        return
    except ImportError:
        pass
    module = importlib.import_module(module_name)
    assert hasattr(module, attr), target
