"""`Configurable`: objects that remember the arguments they were built with.

TFP bijectors and distributions keep their constructor arguments in
`parameters`; the library's plain `tf.Module` parts (conditioners, decoders,
proposals, Gaussian heads) inherit from `Configurable` instead, which records
the outermost constructor call's arguments (defaults filled in) in
`init_arguments`. That is what lets a composition of parts be saved as a
config and rebuilt (`tfp_flows.internal.serialization`).
"""

import functools
import inspect

_ATTR = "_tfp_flows_init_arguments"


class Configurable:
    """Mixin recording the constructor arguments of every subclass instance."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self, *args, **kw):
            if _ATTR not in self.__dict__:
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                arguments = dict(bound.arguments)
                arguments.pop("self")
                # Bypass tf.Module's attribute tracking: this is bookkeeping, not state.
                self.__dict__[_ATTR] = arguments
            init(self, *args, **kw)

        cls.__init__ = recording_init

    @property
    def init_arguments(self):
        """The constructor arguments this object was built with (a new dict)."""
        return dict(self.__dict__.get(_ATTR, {}))
