"""Configs of flow compositions: save a distribution without pickle, rebuild it in safe mode.

`serialize(obj)` turns a distribution (or bijector) built from this library's
parts and TFP's common bijectors and distributions into a JSON-able dict;
`deserialize(config)` rebuilds an object of the same structure, whose Keras
layers then receive the saved weights (`tfp_flows.keras.FlowModel.get_config`
uses it, so `model.save` / `keras.saving.load_model` and
`keras.callbacks.ModelCheckpoint` work for any such model).

What is recorded for each part, and how it is rebuilt:

* a library bijector or distribution (a `tfb.Bijector` / `tfd.Distribution`
  subclass in `tfp_flows`), or a TFP one of `TFP_BIJECTORS` /
  `TFP_DISTRIBUTIONS`: its constructor arguments (`parameters`, filtered by
  the constructor's signature; defaults left out), and for a TFP bijector a
  `contract.mark_conditional` declaration; rebuilt by its constructor (then
  `mark_conditional`);
* a library `tf.Module` part (`internal.config.Configurable`: conditioners,
  funnel decoders, proposals, Gaussian heads): its `init_arguments`; rebuilt
  by its constructor;
* a Keras 3 layer (a registered serialisable class, e.g. `tfp_flows.nets.*`):
  `keras.saving.serialize_keras_object`; rebuilt by
  `keras.saving.deserialize_keras_object`;
* a tensor, NumPy array or non-trainable `tf.Variable`: values (nested lists)
  and dtype; Python scalars, str, None, lists, tuples, dicts with str keys,
  `tf.DType` and `tf.TensorShape`: themselves.

Keras layers built *inside* a constructor are rebuilt by it; layers passed
*in* as arguments (`KernelCoupling(inducing_points=...)`,
`FFJORD(vector_field=...)`) are arguments like any other. Every object
(layer, bijector, distribution, module) is recorded once in a table and
referred to by index, so an object shared by several parts (one
`InducingPoints` layer for several couplings) is one object after loading:
its weights stay shared. Keras restores the weights by the structure of the
rebuilt layers, which equals the saved one.

Anything else (a Python function or lambda as a conditioner, a trainable
`tf.Variable`, an unregistered class) raises a `TypeError` naming the part's
path, e.g. ``cannot save `distribution.bijector.bijectors[2].shift_and_log_scale_fn`:
a function``. Loading instantiates only the classes above (no imports from
the config, no pickle): it is safe-mode compatible.
"""

import inspect
import json
import sys
import types

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.internal import contract
from tfp_flows.internal.config import Configurable

tfb = tfp.bijectors
tfd = tfp.distributions

FORMAT = "tfp_flows.serialization"
VERSION = 1
_KIND = "__tfp_flows__"
_SIZE_ATTR = "_tfp_flows_conditional_size"

#: TFP bijectors that may appear in a saved composition (`tfp.bijectors.<name>`).
TFP_BIJECTORS = (
    "Blockwise", "Chain", "Exp", "Expm1", "Identity", "Invert", "Log", "MaskedAutoregressiveFlow",
    "NormalCDF", "Pad", "Permute", "Power", "RationalQuadraticSpline", "RealNVP", "Reshape",
    "Scale", "ScaleMatvecDiag", "ScaleMatvecLU", "ScaleMatvecTriL", "Shift", "Sigmoid",
    "SoftClip", "Softplus", "Square", "Tanh", "Transpose",
)
#: TFP distributions that may appear in a saved composition (`tfp.distributions.<name>`).
TFP_DISTRIBUTIONS = (
    "Beta", "Categorical", "Independent", "Laplace", "Logistic", "MixtureSameFamily",
    "MultivariateNormalDiag", "MultivariateNormalTriL", "Normal", "Sample", "StudentT",
    "TransformedDistribution", "TruncatedNormal", "Uniform",
)
# Library packages whose classes (and their submodules' classes) are saveable parts.
_LIBRARY_PACKAGES = ("tfp_flows.bijectors", "tfp_flows.distributions", "tfp_flows.nets",
                     "tfp_flows.flows")
_HINT = ("use the library's parts (e.g. tfp_flows.bijectors.AffineCouplingConditioner as a "
         "TFP conditioner), or save the weights with `model.save_weights`")

_registry = {}      # config name -> class
_class_names = {}   # class -> config name
_user_classes = {}


def register_serializable(cls, name=None):
    """Allows `cls` (a `tfb.Bijector`, `tfd.Distribution` or `Configurable` subclass of yours)
    in saved configs under `name` (default `"user>" + cls.__name__`). Returns `cls`.

    Its instances are saved by their constructor arguments (`parameters` for
    TFP objects, `init_arguments` for `Configurable` ones), so every argument
    must itself be saveable. Register it before loading, too.
    """
    if not (isinstance(cls, type) and issubclass(cls, (tfb.Bijector, tfd.Distribution,
                                                       Configurable))):
        raise TypeError("`cls` must be a tfb.Bijector, tfd.Distribution or "
                        f"tfp_flows.internal.config.Configurable subclass; got {cls!r}.")
    _user_classes[name or f"user>{cls.__name__}"] = cls
    _registry.clear()
    return cls


def _build_registry():
    if _registry:
        return
    found = {}
    for package in _LIBRARY_PACKAGES:
        __import__(package)
        for module_name, module in sorted(sys.modules.items()):
            if module is None or not (module_name == package
                                      or module_name.startswith(package + ".")):
                continue
            public = set(getattr(module, "__all__", ()))
            for attr, value in vars(module).items():
                if (isinstance(value, type) and not attr.startswith("_")
                        and value.__module__.startswith("tfp_flows.")
                        and issubclass(value, (tfb.Bijector, tfd.Distribution, Configurable))):
                    # Prefer the short public name (`bijectors.KernelCoupling`).
                    key = (f"{package.split('.')[-1]}.{attr}" if module_name == package
                           and attr in public else f"{value.__module__}.{attr}")
                    found.setdefault(value, set()).add(key)
    for cls, keys in found.items():
        short = sorted(keys, key=lambda k: (k.startswith("tfp_flows."), len(k), k))
        _class_names[cls] = short[0]
        for key in keys:
            _registry[key] = cls
    for names, module, prefix in ((TFP_BIJECTORS, tfb, "tfp.bijectors."),
                                  (TFP_DISTRIBUTIONS, tfd, "tfp.distributions.")):
        for name in names:
            cls = getattr(module, name)
            _registry[prefix + name] = cls
            _class_names[cls] = prefix + name
            # TFP's constructors return a private non-composite base (`_Chain`) when a part
            # is not a CompositeTensor (ours hold Keras layers): the same constructor.
            for base in cls.__mro__[1:]:
                if base.__name__ == "_" + name:
                    _class_names[base] = prefix + name
    for name, cls in _user_classes.items():
        _registry[name] = cls
        _class_names[cls] = name


def _fail(path, what):
    raise TypeError(f"cannot save `{path}`: {what}; {_HINT}.")


def _constructor_arguments(cls, arguments, path):
    """The entries of `arguments` that are constructor arguments of `cls`, minus defaults."""
    try:
        signature = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        _fail(path, f"a {cls.__name__} whose constructor signature cannot be read")
    out = {}
    for name, param in list(signature.parameters.items())[1:]:
        if param.kind is param.VAR_KEYWORD:
            out.update(arguments.get(name) or {})  # recorded `**kwargs`
            continue
        if param.kind is param.VAR_POSITIONAL:
            if arguments.get(name):
                _fail(path, f"a {cls.__name__} built with extra positional arguments")
            continue
        if name == "parameters":  # TFP's pass-through of a subclass's parameters
            continue
        if name not in arguments or arguments[name] is param.default:
            continue
        out[name] = arguments[name]
    return out


def _to_json(value):
    """A pure-JSON copy (tuples become lists), so Keras stores the config as given."""
    return json.loads(json.dumps(value))


class _Encoder:
    def __init__(self):
        self.objects = []
        self.index = {}   # id(obj) -> table index
        self.alive = []   # keeps encoded objects alive, so ids are not reused

    def ref(self, obj, path, make):
        key = id(obj)
        if key not in self.index:
            self.index[key] = len(self.objects)
            self.objects.append(None)
            self.alive.append(obj)
            self.objects[self.index[key]] = make()
        elif self.objects[self.index[key]] is None:
            _fail(path, "a part that contains itself")
        return {_KIND: "ref", "id": self.index[key]}

    def encode(self, value, path):
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, np.generic):
            return {_KIND: "ndarray", "dtype": value.dtype.name, "value": value.item(),
                    "scalar": True}
        if isinstance(value, tf.DType):
            return {_KIND: "dtype", "name": value.name}
        if isinstance(value, np.dtype):
            return {_KIND: "numpy_dtype", "name": value.name}
        if isinstance(value, tf.TensorShape):
            return {_KIND: "shape", "dims": None if value.rank is None else value.as_list()}
        if isinstance(value, keras.Variable):
            _fail(path, "a Keras variable (hold it in a Keras layer passed as an argument, "
                        "e.g. tfp_flows.nets.Parameters)")
        if isinstance(value, tf.Variable):
            if value.trainable:
                _fail(path, "a trainable tf.Variable, whose link to a Keras weight cannot be "
                            "saved (hold it in a Keras layer, e.g. tfp_flows.nets.Parameters)")
            return {_KIND: "variable", **self.array(value.numpy(), path)}
        if isinstance(value, tf.Tensor):
            if not hasattr(value, "numpy"):
                _fail(path, "a symbolic tensor (save outside tf.function)")
            return {_KIND: "tensor", **self.array(value.numpy(), path)}
        if isinstance(value, np.ndarray):
            return {_KIND: "ndarray", **self.array(value, path)}
        if type(value) is list:
            return [self.encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if type(value) is tuple:
            return {_KIND: "tuple",
                    "items": [self.encode(v, f"{path}[{i}]") for i, v in enumerate(value)]}
        if type(value) is dict:
            for key in value:
                if not isinstance(key, str):
                    _fail(f"{path}[{key!r}]", "a dict key that is not a string")
            return {_KIND: "dict",
                    "items": {k: self.encode(v, f"{path}[{k!r}]") for k, v in value.items()}}
        if isinstance(value, keras.layers.Layer):
            return self.ref(value, path, lambda: self.layer(value, path))
        if isinstance(value, tfb.Bijector | tfd.Distribution | Configurable):
            return self.ref(value, path, lambda: self.part(value, path))
        if isinstance(value, types.FunctionType | types.BuiltinFunctionType | types.MethodType
                      | types.LambdaType):
            _fail(path, f"a function ({getattr(value, '__qualname__', value)!r})")
        what = f"a {type(value).__module__}.{type(value).__qualname__}"
        _fail(path, f"{what}, which is not a saveable part" + (
            " (a callable object)" if callable(value) else ""))

    def array(self, array, path):
        array = np.asarray(array)
        if array.dtype.kind not in "biuf":
            _fail(path, f"an array of dtype {array.dtype.name} (numbers and bools only)")
        return {"dtype": array.dtype.name, "value": array.tolist()}

    def layer(self, layer, path):
        if isinstance(layer, keras.layers.Lambda):
            _fail(path, "a keras.layers.Lambda (its function cannot be loaded in safe mode)")
        cls = type(layer)
        registered = keras.saving.get_registered_name(cls)
        if not cls.__module__.startswith("keras") and (
                keras.saving.get_registered_object(registered) is not cls):
            _fail(path, f"a Keras layer of class {cls.__qualname__} that is not registered "
                        "(decorate it with `keras.saving.register_keras_serializable()`)")
        try:
            config = keras.saving.serialize_keras_object(layer)
        except Exception as error:  # noqa: BLE001 - any get_config failure means "cannot save"
            _fail(path, f"a Keras layer {layer.name!r} whose config fails ({error})")
        return {_KIND: "keras", "config": _to_json(config)}

    def part(self, obj, path):
        _build_registry()
        cls = type(obj)
        name = _class_names.get(cls)
        if name is None:
            _fail(path, f"a {cls.__module__}.{cls.__qualname__}, which is not a saveable class "
                        f"(saveable: this library's bijectors, distributions and parts, TFP's "
                        f"{', '.join(TFP_BIJECTORS)} and {', '.join(TFP_DISTRIBUTIONS)}; "
                        "others with `tfp_flows.internal.serialization.register_serializable`)")
        if isinstance(obj, Configurable) and not isinstance(obj, tfb.Bijector | tfd.Distribution):
            arguments = obj.init_arguments
        else:
            arguments = dict(obj.parameters)
        arguments = _constructor_arguments(cls, arguments, path)
        spec = {_KIND: "object", "class": name,
                "arguments": {k: self.encode(v, f"{path}.{k}") for k, v in arguments.items()}}
        # A `mark_conditional` declaration: on TFP objects and on library subclasses of TFP
        # classes (e.g. the one-pass couplings); `contract.Declared` objects declare their own.
        size = getattr(obj, _SIZE_ATTR, None)
        if size and not isinstance(obj, contract.Declared):
            spec["conditional_size"] = int(size)
        return spec


def serialize(obj, path="distribution"):
    """A JSON-able config of `obj` (a distribution, bijector or part); see the module docstring.

    Raises:
      TypeError: a part cannot be saved; the message names its path below `path`.
    """
    encoder = _Encoder()
    root = encoder.encode(obj, path)
    return {"format": FORMAT, "version": VERSION, "objects": encoder.objects, "root": root}


class _Decoder:
    def __init__(self, objects):
        self.objects = objects
        self.built = {}
        self.building = set()

    def resolve(self, index):
        if index in self.built:
            return self.built[index]
        if not isinstance(index, int) or not 0 <= index < len(self.objects):
            raise ValueError(f"Invalid config: reference to object {index!r} of "
                             f"{len(self.objects)}.")
        if index in self.building:
            raise ValueError(f"Invalid config: object {index} refers to itself.")
        self.building.add(index)
        self.built[index] = self.make(self.objects[index])
        return self.built[index]

    def make(self, spec):
        kind = spec.get(_KIND) if isinstance(spec, dict) else None
        if kind == "keras":
            return keras.saving.deserialize_keras_object(spec["config"])
        if kind != "object":
            raise ValueError(f"Invalid config: expected a saved object; got {spec!r:.200}.")
        _build_registry()
        cls = _registry.get(spec["class"])
        if cls is None:
            raise ValueError(f"Cannot load a {spec['class']!r}: not a saveable class in this "
                             "version of tfp_flows (register your own classes with "
                             "`register_serializable` before loading).")
        arguments = {k: self.decode(v) for k, v in spec["arguments"].items()}
        obj = cls(**arguments)
        if spec.get("conditional_size"):
            contract.mark_conditional(obj, int(spec["conditional_size"]))
        return obj

    def decode(self, value):
        if isinstance(value, list):
            return [self.decode(v) for v in value]
        if not isinstance(value, dict):
            return value
        kind = value.get(_KIND)
        if kind == "ref":
            return self.resolve(value["id"])
        if kind == "tuple":
            return tuple(self.decode(v) for v in value["items"])
        if kind == "dict":
            return {k: self.decode(v) for k, v in value["items"].items()}
        if kind == "dtype":
            return tf.as_dtype(value["name"])
        if kind == "numpy_dtype":
            return np.dtype(value["name"])
        if kind == "shape":
            return tf.TensorShape(value["dims"])
        if kind in ("tensor", "variable", "ndarray"):
            array = np.asarray(value["value"], dtype=np.dtype(value["dtype"]))
            if kind == "tensor":
                return tf.constant(array)
            if kind == "variable":
                return tf.Variable(array, trainable=False)
            return array[()] if value.get("scalar") else array
        raise ValueError(f"Invalid config: unknown entry {value!r:.200}.")


def deserialize(config):
    """Rebuilds the object `serialize` described (new objects, fresh weights).

    Raises:
      ValueError: `config` is not a config written by `serialize`, or names a
        class this version does not know.
    """
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"`config` must be a dict written by `{__name__}.serialize`; got "
                         f"{config!r:.200}.")
    if config.get("version", 0) > VERSION:
        raise ValueError(f"`config` has version {config['version']}; this version of tfp_flows "
                         f"reads up to {VERSION}.")
    return _Decoder(config["objects"]).decode(config["root"])
