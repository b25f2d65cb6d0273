"""tfp_flows: kernelised coupling, funnel, augmentation, LGF/CIF and FFJORD flows for
TensorFlow Probability, trainable with Keras 3 `model.fit`."""

import os as _os

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from tfp_flows import bijectors, flows, keras, nets  # noqa: E402

__version__ = "0.1.0"
__all__ = ["bijectors", "flows", "keras", "nets"]
