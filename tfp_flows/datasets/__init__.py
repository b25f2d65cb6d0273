"""Data for flow experiments: 2-D toys, synthetic and real tabular data.

Pure numpy and scikit-learn (pandas for GAS and h5py for BSDS300 are imported
only by those loaders); no model code and no TensorFlow here. Every generator
returns float32 arrays ``[n, D]`` and takes an int `seed`; every loader returns
a `Split`. `load(name, ...)` reaches all of them by name; `available()` lists
the names.
"""

from tfp_flows.datasets.conditional import bimodal_sine, rotated_moons
from tfp_flows.datasets.registry import available, load
from tfp_flows.datasets.synthetic import gaussian_power
from tfp_flows.datasets.tabular import (
    AnomalySplit,
    Split,
    load_breast_cancer,
    load_digits,
    load_digits_by_class,
    load_wine,
    subsample,
)
from tfp_flows.datasets.toy import (
    checkerboard,
    eight_gaussians,
    four_circles,
    line,
    pinwheel,
    two_moons,
    two_rectangles,
    two_spirals,
)
from tfp_flows.datasets.uci import (
    load_bsds300,
    load_gas,
    load_hepmass,
    load_miniboone,
    load_power,
)

__all__ = [
    "AnomalySplit",
    "Split",
    "available",
    "bimodal_sine",
    "checkerboard",
    "eight_gaussians",
    "four_circles",
    "gaussian_power",
    "line",
    "rotated_moons",
    "load",
    "load_breast_cancer",
    "load_bsds300",
    "load_digits",
    "load_digits_by_class",
    "load_gas",
    "load_hepmass",
    "load_miniboone",
    "load_power",
    "load_wine",
    "pinwheel",
    "subsample",
    "two_moons",
    "two_rectangles",
    "two_spirals",
]
