"""Small real tabular data sets from scikit-learn, with fixed splits.

Every loader returns a `Split` of float32 arrays standardised with the mean and
standard deviation of the *training* split only (a zero std is replaced by 1,
so constant features stay finite). The train/validation/test assignment of
every example is fixed: a permutation drawn once with seed 0, cut 70/10/20.
The `seed` arguments only drive dequantisation noise and `subsample`, never
the split, so results with different seeds are evaluated on the same test set.
"""

import dataclasses
import numbers

import numpy as np

from tfp_flows.datasets.toy import _check_positive_int, _check_seed

__all__ = [
    "AnomalySplit",
    "Split",
    "load_breast_cancer",
    "load_digits",
    "load_digits_by_class",
    "load_wine",
    "subsample",
]

_SPLIT_SEED = 0
_TRAIN_FRACTION, _VALIDATION_FRACTION = 0.7, 0.1
_NUM_DIGIT_CLASSES = 10


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """Train/validation/test arrays of one data set.

    Attributes:
      train: float32 array ``[n_train, D]``.
      validation: float32 array ``[n_validation, D]``.
      test: float32 array ``[n_test, D]``.
      name: Name of the data set.
      labels: None, or a dict from split name (``"train"``, ``"validation"``,
        ``"test"``, and ``"anomalous"`` for `AnomalySplit`) to an int array of
        class labels aligned with that split's rows.
      conditions: None, or (conditional data sets) a dict from split name to
        the float32 array ``[n, C]`` of conditions aligned with that split's
        rows: `train[i]` was drawn from ``p(y | conditions["train"][i])``.
    """

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    name: str
    labels: dict | None = None
    conditions: dict | None = None

    @property
    def dim(self):
        """The event dimension D."""
        return int(self.train.shape[-1])

    def __repr__(self):
        shapes = ", ".join(
            f"{field}={getattr(self, field).shape}" for field in self._array_fields()
        )
        return f"{type(self).__name__}(name={self.name!r}, {shapes})"

    def _array_fields(self):
        return ("train", "validation", "test")


@dataclasses.dataclass(frozen=True, eq=False, repr=False, kw_only=True)
class AnomalySplit(Split):
    """A `Split` of normal classes plus held-out anomalous test examples.

    Attributes:
      anomalous: float32 array ``[n_anomalous, D]`` of test-split examples from
        the classes not used for training, standardised with the training
        statistics of the normal classes.
    """

    anomalous: np.ndarray

    def _array_fields(self):
        return ("train", "validation", "test", "anomalous")


def _fixed_split_indices(num_examples):
    """Returns index arrays (train, validation, test): a fixed 70/10/20 cut."""
    perm = np.random.default_rng(_SPLIT_SEED).permutation(num_examples)
    n_train = int(round(_TRAIN_FRACTION * num_examples))
    n_val = int(round(_VALIDATION_FRACTION * num_examples))
    return perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :]


def _standardise(train, *others):
    """Standardises all arrays with the train mean/std (std 0 -> 1), float32."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return tuple(((x - mean) / std).astype(np.float32) for x in (train,) + others)


def _split_and_standardise(data, targets, name, keep=None):
    """Cuts `data` by the fixed split, keeps rows whose label is in `keep`."""
    parts = _fixed_split_indices(data.shape[0])
    if keep is not None:
        parts = tuple(idx[np.isin(targets[idx], keep)] for idx in parts)
    arrays = _standardise(*(data[idx] for idx in parts))
    labels = {
        key: targets[idx].astype(np.int64)
        for key, idx in zip(("train", "validation", "test"), parts, strict=True)
    }
    return Split(*arrays, name=name, labels=labels)


def _check_classes(classes, arg_name):
    """Returns the sorted unique digit labels in `classes`, or raises."""
    if isinstance(classes, numbers.Integral):
        classes = [classes]
    try:
        values = list(classes)
    except TypeError:
        raise ValueError(
            f"`{arg_name}` must be an iterable of digit labels in 0..9; got {classes!r}."
        ) from None
    if not values:
        raise ValueError(f"`{arg_name}` must contain at least one digit label; got {classes!r}.")
    for value in values:
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Integral)
            or not 0 <= value < _NUM_DIGIT_CLASSES
        ):
            raise ValueError(f"`{arg_name}` must contain digit labels in 0..9; got {value!r}.")
    return np.unique(np.asarray(values, dtype=np.int64))


def _digits_data(dequantize, seed):
    """Returns (pixels as float64, labels), optionally dequantised."""
    from sklearn import datasets as sk_datasets

    bunch = sk_datasets.load_digits()
    data = bunch.data.astype(np.float64)
    if dequantize:
        # Uniform noise on [0, 1) turns the 17 integer grey levels into a
        # continuous density (Theis et al., 2016), so likelihoods are finite.
        data = data + np.random.default_rng(_check_seed(seed)).random(data.shape)
    return data, bunch.target


def load_digits(dequantize=True, classes=None, seed=0):
    """Loads scikit-learn's 8x8 handwritten digits as 64-D vectors.

    Density: 1,797 images with 17 integer grey levels (0..16) per pixel. With
    `dequantize` every pixel gets Uniform[0, 1) noise before standardising,
    making the data continuous. Split 1258/180/359 (train/validation/test)
    before filtering by `classes`.

    Args:
      dequantize: Whether to add Uniform[0, 1) noise to the integer pixels.
      classes: None for all digits, or an iterable of digit labels (0..9) to
        keep. The split of each kept image is the same as without filtering;
        the standardisation uses the kept training images.
      seed: Non-negative int seed for the dequantisation noise.

    Returns:
      `Split` named ``"digits"`` with ``labels`` for every split.

    Raises:
      ValueError: If `classes` is empty or holds anything but labels 0..9.
    """
    keep = None if classes is None else _check_classes(classes, "classes")
    data, targets = _digits_data(dequantize, seed)
    return _split_and_standardise(data, targets, "digits", keep)


def load_digits_by_class(normal_classes, seed=0, dequantize=True):
    """Loads digits for anomaly detection: train on some classes, test on all.

    Density: as `load_digits`. Train, validation and test hold only the
    `normal_classes`; ``anomalous`` holds the test-split images of all other
    classes (never seen in training or validation). Everything is standardised
    with the statistics of the normal training images.

    Args:
      normal_classes: Iterable of digit labels (0..9) treated as normal; it
        must leave at least one class out.
      seed: Non-negative int seed for the dequantisation noise.
      dequantize: Whether to add Uniform[0, 1) noise to the integer pixels.

    Returns:
      `AnomalySplit` named ``"digits"``; ``labels`` has an ``"anomalous"`` key.

    Raises:
      ValueError: If `normal_classes` is empty, covers all ten digits, or holds
        anything but labels 0..9.
    """
    normal = _check_classes(normal_classes, "normal_classes")
    if normal.size == _NUM_DIGIT_CLASSES:
        raise ValueError(
            "`normal_classes` must leave at least one digit class out as anomalous; "
            f"got all of {normal.tolist()}."
        )
    data, targets = _digits_data(dequantize, seed)
    train, val, test = _fixed_split_indices(data.shape[0])
    is_normal = np.isin(targets, normal)
    parts = {
        "train": train[is_normal[train]],
        "validation": val[is_normal[val]],
        "test": test[is_normal[test]],
        "anomalous": test[~is_normal[test]],
    }
    arrays = _standardise(*(data[idx] for idx in parts.values()))
    labels = {key: targets[idx].astype(np.int64) for key, idx in parts.items()}
    return AnomalySplit(*arrays[:3], name="digits", labels=labels, anomalous=arrays[3])


def _load_sklearn(loader_name, name):
    from sklearn import datasets as sk_datasets

    bunch = getattr(sk_datasets, loader_name)()
    return _split_and_standardise(bunch.data.astype(np.float64), bunch.target, name)


def load_breast_cancer():
    """Loads the Wisconsin breast-cancer features (569 x 30).

    Density: 30 positive, skewed real features of cell nuclei, standardised.
    Split 398/57/114.

    Returns:
      `Split` named ``"breast_cancer"`` with the 0/1 diagnosis as ``labels``.
    """
    return _load_sklearn("load_breast_cancer", "breast_cancer")


def load_wine():
    """Loads the UCI wine chemical-analysis features (178 x 13).

    Density: 13 real features from three cultivars (a 3-component mixture),
    standardised. Split 125/18/35.

    Returns:
      `Split` named ``"wine"`` with the cultivar (0..2) as ``labels``.
    """
    return _load_sklearn("load_wine", "wine")


def subsample(split_or_array, num_train=500, seed=0):
    """Keeps a seeded random subset of the training data (low-data regime).

    For a `Split`, only ``train`` (and ``labels["train"]``) is subsampled;
    validation, test and the standardisation are untouched, so results stay
    comparable with the full-data setting. Subsets are nested: with the same
    seed, the 100-example subset lies inside the 500-example one.

    Args:
      split_or_array: A `Split` (or `AnomalySplit`), or an array ``[n, D]``.
      num_train: Positive int, number of training examples to keep.
      seed: Non-negative int seed for ``np.random.default_rng``.

    Returns:
      A `Split` of the same type, or an array ``[num_train, D]``.

    Raises:
      TypeError: If `split_or_array` is neither a `Split` nor an array.
      ValueError: If `num_train` is < 1 or larger than the training set.
    """
    if isinstance(split_or_array, Split):
        train = split_or_array.train
    elif isinstance(split_or_array, np.ndarray):
        train = split_or_array
    else:
        raise TypeError(
            "`split_or_array` must be a `Split` or a numpy array; "
            f"got {type(split_or_array).__name__}."
        )
    num_train = _check_positive_int("num_train", num_train)
    if num_train > train.shape[0]:
        raise ValueError(
            f"`num_train` must be at most the number of training examples "
            f"({train.shape[0]}); got {num_train}."
        )
    perm = np.random.default_rng(_check_seed(seed)).permutation(train.shape[0])
    # Sorting keeps the original order; the prefix of one permutation makes
    # subsets of different sizes nested.
    idx = np.sort(perm[:num_train])
    if not isinstance(split_or_array, Split):
        return train[idx]
    labels = split_or_array.labels
    if labels is not None and labels.get("train") is not None:
        labels = dict(labels, train=labels["train"][idx])
    return dataclasses.replace(split_or_array, train=train[idx], labels=labels)
