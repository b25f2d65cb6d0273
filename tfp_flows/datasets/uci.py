"""The five density-estimation benchmarks of Papamakarios et al. (2017).

POWER, GAS, HEPMASS, MINIBOONE (UCI) and BSDS300 (image patches), read from
the preprocessed data archive released with Masked Autoregressive Flow
(https://zenodo.org/record/1161203, the ``data/`` folder). Each loader
reproduces the preprocessing and the train/validation/test split of the MAF
code (github.com/gpapamak/maf, ``datasets/*.py``), including its quirks, which
are noted per loader. Outputs are float32 `Split`s, as in MAF.

Every loader `load_NAME(data_dir)` takes the MAF ``data/`` folder and returns
a `Split` named after the data set (``"power"``, ...); it raises
`FileNotFoundError` naming the file when the folder or a file is missing.
Expected layout under `data_dir`: ``power/data.npy``, ``gas/ethylene_CO.pickle``,
``hepmass/1000_train.csv`` and ``hepmass/1000_test.csv``,
``miniboone/data.npy``, ``BSDS300/BSDS300.hdf5``. GAS needs pandas and
BSDS300 needs h5py; both are imported only when those loaders run.
"""

import importlib
import pathlib

import numpy as np

from tfp_flows.datasets.tabular import Split

__all__ = ["load_bsds300", "load_gas", "load_hepmass", "load_miniboone", "load_power"]

_ARCHIVE_HINT = (
    "The file comes from the preprocessed data archive of Papamakarios et al. (2017), "
    "'Masked Autoregressive Flow for Density Estimation' (the `data/` folder of the MAF "
    "release, https://zenodo.org/record/1161203): extract it and pass that folder as "
    "`data_dir`."
)


def _require_file(dataset, data_dir, *parts):
    """Returns the path `data_dir/parts...`, or raises FileNotFoundError."""
    if data_dir is None:
        raise ValueError(f"{dataset}: `data_dir` is required; got None. {_ARCHIVE_HINT}")
    root = pathlib.Path(data_dir)
    path = root.joinpath(*parts)
    if not root.is_dir():
        raise FileNotFoundError(
            f"{dataset}: data directory '{root}' does not exist (expected file '{path}'). "
            + _ARCHIVE_HINT
        )
    if not path.is_file():
        raise FileNotFoundError(f"{dataset}: expected file '{path}' not found. {_ARCHIVE_HINT}")
    return path


def _import_optional(module, dataset):
    """Imports an optional dependency, or raises ImportError saying how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{dataset} needs the optional package `{module}`; install it with "
            f"`pip install {module}`."
        ) from err


def _load_2d_npy(dataset, path):
    data = np.load(path)
    if data.ndim != 2:
        raise ValueError(f"{dataset}: expected a 2-D array in '{path}'; got shape {data.shape}.")
    return data


def _split_tail(dataset, data):
    """MAF's split: last 10% is test, last 10% of the rest is validation."""
    n_test = int(0.1 * data.shape[0])
    n_val = int(0.1 * (data.shape[0] - n_test))
    # MAF slices data[-n:], which silently returns everything when n == 0.
    if n_val < 1:
        raise ValueError(
            f"{dataset}: need at least 11 rows to make the 10% test and validation splits; "
            f"got {data.shape[0]}."
        )
    rest, test = data[:-n_test], data[-n_test:]
    return rest[:-n_val], rest[-n_val:], test


def _normalise_with_train_and_validation(dataset, train, val, test):
    """MAF's POWER/MINIBOONE scaling: mean/std (ddof 0) of train + validation."""
    both = np.vstack((train, val))
    mean, std = both.mean(axis=0), both.std(axis=0)
    # MAF divides by zero for a constant feature; keep such features finite.
    std = np.where(std > 0, std, 1.0)
    arrays = ((x - mean) / std for x in (train, val, test))
    return Split(*(x.astype(np.float32) for x in arrays), name=dataset.lower())


def load_power(data_dir):
    """Loads POWER (household electric power consumption), D = 6.

    Preprocessing as MAF ``datasets/power.py``: load ``power/data.npy`` (8
    columns: global active power, global reactive power, voltage, global
    intensity, sub-metering 1-3, time of day); shuffle the rows with
    ``np.random.RandomState(42)``; delete column 3 (global intensity), then
    column 1 (global reactive power); add uniform noise, drawn from the same
    RandomState in MAF's order (voltage ``0.01 U``, then global active power
    ``0.001 U``, then the three sub-meterings ``U``; time gets none); test = last
    10%, validation = last 10% of the rest; standardise with the mean and std
    (ddof 0) of train + validation. Sizes on the real data: 1,659,917 /
    184,435 / 204,928.

    Raises:
      FileNotFoundError: If the folder or ``power/data.npy`` is missing.
      ValueError: If the array is not ``[N, 8]`` with N >= 11.
    """
    path = _require_file("POWER", data_dir, "power", "data.npy")
    data = _load_2d_npy("POWER", path)
    if data.shape[1] != 8:
        raise ValueError(f"POWER: expected 8 columns in '{path}'; got shape {data.shape}.")
    # The RandomState stream (shuffle first, then noise in this order) is what
    # makes the split and the noise identical to MAF's.
    rng = np.random.RandomState(42)
    rng.shuffle(data)
    n = data.shape[0]
    data = np.delete(data, [1, 3], axis=1)
    voltage_noise = 0.01 * rng.rand(n, 1)
    gap_noise = 0.001 * rng.rand(n, 1)
    sub_metering_noise = rng.rand(n, 3)
    time_noise = np.zeros((n, 1))
    data = data + np.hstack((gap_noise, voltage_noise, sub_metering_noise, time_noise))
    return _normalise_with_train_and_validation("POWER", *_split_tail("POWER", data))


def load_gas(data_dir):
    """Loads GAS (ethylene and CO gas-sensor array), D = 8. Needs pandas.

    Preprocessing as MAF ``datasets/gas.py``: read the pandas pickle
    ``gas/ethylene_CO.pickle`` (only load trusted files: unpickling runs code);
    drop columns ``Meth``, ``Eth``, ``Time``; then, while some column has a
    Pearson correlation > 0.98 with another column, drop the first such column
    and recompute; standardise with the mean and std (ddof 1, pandas) of the
    *whole* data set (MAF does this before splitting); test = last 10%,
    validation = last 10% of the rest. No shuffling. Sizes on the real data:
    852,174 / 94,685 / 105,206.

    Raises:
      FileNotFoundError: If the folder or the pickle is missing.
      ImportError: If pandas is not installed.
      ValueError: If the pickle is not a DataFrame with the expected columns.
    """
    path = _require_file("GAS", data_dir, "gas", "ethylene_CO.pickle")
    pd = _import_optional("pandas", "GAS")
    frame = pd.read_pickle(path)
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"GAS: expected a pandas DataFrame in '{path}'; got {type(frame)}.")
    missing = [c for c in ("Meth", "Eth", "Time") if c not in frame.columns]
    if missing:
        raise ValueError(f"GAS: columns {missing} not found in '{path}'.")
    frame = frame.drop(columns=["Meth", "Eth", "Time"])
    while True:
        # Each column correlates with itself, so a count > 1 means a partner.
        num_correlated = (frame.corr() > 0.98).to_numpy().sum(axis=1)
        if not np.any(num_correlated > 1):
            break
        frame = frame.drop(columns=frame.columns[np.flatnonzero(num_correlated > 1)[0]])
    frame = (frame - frame.mean()) / frame.std()
    train, val, test = _split_tail("GAS", frame.to_numpy(dtype=np.float64))
    return Split(*(x.astype(np.float32) for x in (train, val, test)), name="gas")


def _read_csv(dataset, path):
    """Reads a headed numeric CSV as pandas' ``read_csv(index_col=False)`` would.

    Returns the column names (empty names become ``"Unnamed: i"``) and a float64
    array with one column per name: empty fields and fields missing from the
    rows are NaN, fields beyond the header are ignored.
    """
    with open(path) as f:
        header = f.readline().rstrip("\r\n").split(",")
        first_row = f.readline().rstrip("\r\n").split(",")
    names = [h.strip() or f"Unnamed: {i}" for i, h in enumerate(header)]
    if first_row == [""]:
        raise ValueError(f"{dataset}: no data rows in '{path}'.")
    used = [i for i in range(min(len(names), len(first_row))) if first_row[i].strip()]
    values = np.loadtxt(path, delimiter=",", skiprows=1, usecols=used, ndmin=2)
    data = np.full((values.shape[0], len(names)), np.nan)
    data[:, used] = values
    return names, data


def load_hepmass(data_dir):
    """Loads HEPMASS (particle-physics signal events), D = 21.

    Preprocessing as MAF ``datasets/hepmass.py``: read
    ``hepmass/1000_train.csv`` and ``hepmass/1000_test.csv``; keep rows whose
    first column (the label) is 1 and drop that column; drop the *last* column
    of the test file (MAF: "the data set is messed up"; MAF's positional use of
    the result implies the test file has one extra trailing column, and we
    check that the remaining names match the training file's); standardise
    both with the mean and std (ddof 1) of
    the whole training file; remove every feature whose *smallest* training
    value occurs more than 5 times (MAF's Counter rule, named ``max_count``
    there but taking the count of the smallest value); validation = last 10%
    of the training rows. Sizes on the real data: 315,123 / 35,013 / 174,987.

    A constant training feature (std 0) would give NaN in MAF; here it is
    treated as all-equal, so the same rule removes it.

    Raises:
      FileNotFoundError: If the folder or a CSV is missing.
      ValueError: If the test columns (after the drop) differ from the train
        columns, or a file has no data rows.
    """
    train_path = _require_file("HEPMASS", data_dir, "hepmass", "1000_train.csv")
    test_path = _require_file("HEPMASS", data_dir, "hepmass", "1000_test.csv")
    train_names, train = _read_csv("HEPMASS", train_path)
    test_names, test = _read_csv("HEPMASS", test_path)
    train, train_names = train[train[:, 0] == 1][:, 1:], train_names[1:]
    test, test_names = test[test[:, 0] == 1][:, 1:-1], test_names[1:-1]
    # MAF aligns the test columns to the training statistics by name (pandas);
    # positional indexing is the same only when the names agree.
    if test_names != train_names:
        raise ValueError(
            f"HEPMASS: after dropping its label and last column, '{test_path}' must have the "
            f"columns of '{train_path}' ({train_names}); got {test_names}."
        )
    mean = np.nanmean(train, axis=0)
    std = np.nanstd(train, axis=0, ddof=1)
    std = np.where(std > 0, std, np.inf)
    train, test = (train - mean) / std, (test - mean) / std
    # np.unique sorts, so counts[0] is the count of the smallest value.
    smallest_counts = [np.unique(col, return_counts=True)[1][0] for col in train.T]
    keep = [j for j, count in enumerate(smallest_counts) if count <= 5]
    train, test = train[:, keep], test[:, keep]
    n_val = int(0.1 * train.shape[0])
    if n_val < 1:
        raise ValueError(
            f"HEPMASS: need at least 10 signal rows in '{train_path}'; got {train.shape[0]}."
        )
    train, val = train[:-n_val], train[-n_val:]
    return Split(*(x.astype(np.float32) for x in (train, val, test)), name="hepmass")


def load_miniboone(data_dir):
    """Loads MINIBOONE (particle identification), D = 43.

    Preprocessing as MAF ``datasets/miniboone.py``: load ``miniboone/data.npy``,
    which the archive already ships cleaned (outliers with a first feature
    below -100 removed and features with too many repeated values dropped; MAF
    keeps that step only as a comment); test = last 10%, validation = last 10%
    of the rest, no shuffling; standardise with the mean and std (ddof 0) of
    train + validation. Sizes on the real data: 29,556 / 3,284 / 3,648.

    Raises:
      FileNotFoundError: If the folder or ``miniboone/data.npy`` is missing.
      ValueError: If the array is not 2-D with at least 11 rows.
    """
    path = _require_file("MINIBOONE", data_dir, "miniboone", "data.npy")
    data = _load_2d_npy("MINIBOONE", path)
    return _normalise_with_train_and_validation("MINIBOONE", *_split_tail("MINIBOONE", data))


def load_bsds300(data_dir):
    """Loads BSDS300 (8x8 natural-image patches), D = 63. Needs h5py.

    As MAF ``datasets/bsds300.py``: read the datasets ``train``, ``validation``
    and ``test`` of ``BSDS300/BSDS300.hdf5`` as they are. The archive already
    holds preprocessed patches (monochrome, dequantised, rescaled to [0, 1],
    patch mean subtracted, and the bottom-right pixel dropped because it equals
    minus the sum of the others), so nothing else is done here; in particular
    no pixel is dropped again. Sizes on the real data: 1,000,000 / 50,000 /
    250,000.

    Raises:
      FileNotFoundError: If the folder or the HDF5 file is missing.
      ImportError: If h5py is not installed.
      ValueError: If one of the three datasets is missing from the file.
    """
    path = _require_file("BSDS300", data_dir, "BSDS300", "BSDS300.hdf5")
    h5py = _import_optional("h5py", "BSDS300")
    with h5py.File(path, "r") as f:
        missing = [key for key in ("train", "validation", "test") if key not in f]
        if missing:
            raise ValueError(f"BSDS300: datasets {missing} not found in '{path}'.")
        arrays = [
            np.asarray(f[key][:], dtype=np.float32) for key in ("train", "validation", "test")
        ]
    return Split(*arrays, name="bsds300")
