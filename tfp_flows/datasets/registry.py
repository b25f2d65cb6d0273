"""One entry point, `load(name, ...)`, for every data set in the package."""

import numpy as np

from tfp_flows.datasets import conditional, tabular, toy, uci
from tfp_flows.datasets.synthetic import gaussian_power
from tfp_flows.datasets.toy import _check_positive_int, _check_seed

__all__ = ["available", "load"]

_DEFAULT_NUM_SAMPLES = 1000

_REAL = {
    "digits": tabular.load_digits,
    "breast_cancer": tabular.load_breast_cancer,
    "wine": tabular.load_wine,
}
_UCI = {
    "power": uci.load_power,
    "gas": uci.load_gas,
    "hepmass": uci.load_hepmass,
    "miniboone": uci.load_miniboone,
    "bsds300": uci.load_bsds300,
}


def available():
    """Returns the names accepted by `load`, in a fixed order."""
    return [*toy.TOY_DATASETS, *conditional.CONDITIONAL_DATASETS, "gaussian_power", *_REAL,
            *_UCI]


def _split_seeds(seed):
    """Three distinct, reproducible int seeds for train/validation/test."""
    return [int(np.random.SeedSequence([seed, k]).generate_state(1)[0]) for k in range(3)]


def _generated(name, sample_fn, num_samples, seed, kwargs):
    """Draws train, validation and test sets from `sample_fn` with own seeds."""
    num_samples = _check_positive_int("num_samples", num_samples)
    num_held_out = max(1, num_samples // 4)
    seeds = _split_seeds(_check_seed(seed))
    sizes = (num_samples, num_held_out, num_held_out)
    arrays = [sample_fn(n, seed=s, **kwargs) for n, s in zip(sizes, seeds, strict=True)]
    if isinstance(arrays[0], tuple):  # conditional data: (y, c) pairs
        conditions = dict(zip(("train", "validation", "test"), (a[1] for a in arrays),
                              strict=True))
        return tabular.Split(*(a[0] for a in arrays), name=name, conditions=conditions)
    return tabular.Split(*arrays, name=name)


def load(name, num_samples=None, seed=0, data_dir=None, **kwargs):
    """Loads a data set by name as a `Split`.

    Generated data (the 2-D toy sets, the conditional toys ``"rotated_moons"``
    and ``"bimodal_sine"``, whose `Split.conditions` hold each row's condition,
    and ``"gaussian_power"``) gets a fresh
    train set of `num_samples` points (default 1000) and validation and test
    sets of ``num_samples // 4`` points each, drawn with three different seeds
    derived from `seed`; it is not standardised. Real data sets are loaded with
    their fixed splits; if `num_samples` is given, the training split is
    subsampled to that size with `subsample` (the low-data setting).

    Args:
      name: One of `available()` (case-insensitive).
      num_samples: Training-set size: generated size, or subsample size for
        real data (None keeps the full training split).
      seed: Non-negative int seed: sampling for generated data, dequantisation
        for ``"digits"``, and the subsample for real data.
      data_dir: The MAF ``data/`` folder; required for ``"power"``, ``"gas"``,
        ``"hepmass"``, ``"miniboone"`` and ``"bsds300"``.
      **kwargs: Passed on to the generator or loader: e.g. ``noise`` for the toy
        sets, ``dim`` and ``psi`` (both required) for ``"gaussian_power"``,
        ``dequantize`` and ``classes`` for ``"digits"``.

    Returns:
      `Split`.

    Raises:
      ValueError: For an unknown `name`, a missing `data_dir`, or missing
        ``dim``/``psi`` for ``"gaussian_power"``.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in available():
        raise ValueError(f"Unknown dataset {name!r}; available: {', '.join(available())}.")
    generators = {**toy.TOY_DATASETS, **conditional.CONDITIONAL_DATASETS}
    if key in generators:
        return _generated(key, generators[key],
                          _DEFAULT_NUM_SAMPLES if num_samples is None else num_samples, seed,
                          kwargs)
    if key == "gaussian_power":
        num_samples = _DEFAULT_NUM_SAMPLES if num_samples is None else num_samples
        missing = [arg for arg in ("dim", "psi") if arg not in kwargs]
        if missing:
            raise ValueError(
                f"Dataset 'gaussian_power' needs the keyword arguments `dim` and `psi`; "
                f"missing {missing}."
            )
        return _generated(key, gaussian_power, num_samples, seed, kwargs)
    if key in _UCI:
        if data_dir is None:
            raise ValueError(
                f"Dataset {key!r} needs a `data_dir`: the folder holding the MAF "
                "preprocessed data (see `tfp_flows.datasets.uci`); got None."
            )
        split = _UCI[key](data_dir, **kwargs)
    elif key == "digits":
        split = _REAL[key](seed=seed, **kwargs)
    else:
        split = _REAL[key](**kwargs)
    if num_samples is not None:
        split = tabular.subsample(split, num_train=num_samples, seed=seed)
    return split
