"""tfp_flows: kernelised coupling, funnel, augmentation, LGF/CIF and FFJORD flows for
TensorFlow Probability, trainable with Keras 3 `model.fit`.

Subpackages load on first use, so `tfp_flows.datasets` (NumPy only) does not
import TensorFlow.
"""

import importlib
import os as _os

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"
_SUBMODULES = ("bijectors", "datasets", "distributions", "evaluation", "flows", "keras", "nets",
               "plotting", "testing")
__all__ = list(_SUBMODULES)


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f"tfp_flows.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'tfp_flows' has no attribute {name!r}")
