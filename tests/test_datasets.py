"""Tests for tfp_flows.datasets (numpy + scikit-learn only; no TensorFlow).

The UCI loaders are tested on small fixture files written into `tmp_path`, in
the formats of the MAF data archive; the real archive is never read.
"""

import dataclasses
import sys

import numpy as np
import pytest

from tfp_flows import datasets
from tfp_flows.datasets import toy, uci

TOY_FNS = sorted(toy.TOY_DATASETS.items())
UCI_NAMES = ["power", "gas", "hepmass", "miniboone", "bsds300"]


# ----------------------------------------------------------------- toy data


@pytest.mark.parametrize("name,fn", TOY_FNS)
def test_toy_shape_dtype_determinism_and_scale(name, fn):
    x = fn(4000, seed=3)
    assert x.shape == (4000, 2) and x.dtype == np.float32
    np.testing.assert_array_equal(x, fn(4000, seed=3))
    assert not np.allclose(x, fn(4000, seed=4))
    assert np.all(np.isfinite(x))
    # "Roughly within [-4, 4]": Gaussian tails may poke out, but barely.
    assert np.mean(np.abs(x) > 4.0) < 0.005
    assert 0.3 < x.std() < 3.0


@pytest.mark.parametrize("name,fn", TOY_FNS)
def test_toy_does_not_touch_global_rng(name, fn):
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    fn(10, seed=0)
    assert np.random.rand() == expected


@pytest.mark.parametrize("name,fn", TOY_FNS)
@pytest.mark.parametrize("bad", [-3, 0, 2.5, True, "10"])
def test_toy_rejects_bad_num_samples(name, fn, bad):
    with pytest.raises(ValueError, match=r"`num_samples` must be a positive integer; got"):
        fn(bad)


def test_toy_error_message_names_the_value():
    with pytest.raises(ValueError, match=r"^`num_samples` must be a positive integer; got -3\.$"):
        datasets.two_moons(-3)


@pytest.mark.parametrize("name,fn", TOY_FNS)
def test_toy_rejects_bad_seed_and_noise(name, fn):
    with pytest.raises(ValueError, match=r"`seed` must be a non-negative integer; got -1"):
        fn(10, seed=-1)
    with pytest.raises(ValueError, match=r"`noise` must be a non-negative finite number; got -0.1"):
        fn(10, noise=-0.1)
    with pytest.raises(ValueError, match=r"`noise` must be a non-negative finite number; got nan"):
        fn(10, noise=float("nan"))


def test_two_moons_noiseless_points_lie_on_the_two_arcs():
    x = (datasets.two_moons(2000, noise=0.0) - np.array([-1.0, -0.2])) / 2.0
    on_upper = np.isclose(np.hypot(x[:, 0], x[:, 1]), 1.0, atol=1e-5) & (x[:, 1] >= -1e-6)
    on_lower = np.isclose(np.hypot(x[:, 0] - 1.0, x[:, 1] - 0.5), 1.0, atol=1e-5)
    assert np.all(on_upper | on_lower)
    assert 0.4 < on_upper.mean() < 0.6


def test_four_circles_has_four_evenly_spaced_rings_with_unit_variance():
    x = datasets.four_circles(20000, noise=0.0)
    radius = np.hypot(x[:, 0], x[:, 1]) * np.sqrt(3.75)
    np.testing.assert_allclose(radius, np.round(radius), atol=1e-5)
    np.testing.assert_array_equal(np.unique(np.round(radius)), [1, 2, 3, 4])
    # Unit variance per coordinate by construction; 3% covers sampling error.
    np.testing.assert_allclose(x.var(axis=0), 1.0, rtol=0.03)


def test_line_without_noise_is_the_diagonal():
    x = datasets.line(500, noise=0.0)
    np.testing.assert_array_equal(x[:, 0], x[:, 1])
    assert x.min() >= -2.5 and x.max() <= 2.5


def test_checkerboard_occupies_alternate_squares():
    x = datasets.checkerboard(5000)
    assert np.all(np.abs(x) <= 4.0)
    # On the 2x2-unit board cells, x-cell and y-cell indices differ in parity.
    cells = np.floor(x / 2.0).astype(int)
    assert np.all((cells[:, 0] + cells[:, 1]) % 2 == 0)


def test_two_rectangles_support():
    x = datasets.two_rectangles(5000)
    assert np.all((np.abs(x[:, 0]) >= 1.0) & (np.abs(x[:, 0]) <= 2.0))
    assert np.all(np.abs(x[:, 1]) <= 1.0)
    assert 0.45 < np.mean(x[:, 0] > 0) < 0.55


def test_eight_gaussians_centres():
    x = datasets.eight_gaussians(8000, noise=1e-3)
    angle = np.round(np.arctan2(x[:, 1], x[:, 0]) / (np.pi / 4)) % 8
    np.testing.assert_array_equal(np.unique(angle), np.arange(8))
    np.testing.assert_allclose(np.hypot(x[:, 0], x[:, 1]), 2.0 * np.sqrt(2.0), atol=0.01)


def test_two_spirals_is_point_symmetric_in_distribution():
    x = datasets.two_spirals(20000)
    # The second spiral is the first one negated, so the mean is near zero.
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=0.05)


# ------------------------------------------------------------ synthetic data


def test_gaussian_power_shapes_and_psi_behaviour():
    x1 = datasets.gaussian_power(20000, dim=3, psi=1, seed=1)
    x2 = datasets.gaussian_power(20000, dim=3, psi=2, seed=1)
    x3 = datasets.gaussian_power(20000, dim=3, psi=3, seed=1)
    for x in (x1, x2, x3):
        assert x.shape == (20000, 3) and x.dtype == np.float32
    # Standard normal: 3% covers the sampling error of 20000 draws.
    np.testing.assert_allclose(x1.std(axis=0), 1.0, rtol=0.03)
    assert np.all(x2 >= 0.0)  # psi = 2 loses the sign.
    np.testing.assert_allclose(x2, x1.astype(np.float64) ** 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x3, x1.astype(np.float64) ** 3, rtol=1e-5, atol=1e-6)
    assert np.any(x3 < 0)  # psi = 3 keeps the sign (invertible map).
    np.testing.assert_array_equal(x3, datasets.gaussian_power(20000, dim=3, psi=3, seed=1))
    assert not np.allclose(x3, datasets.gaussian_power(20000, dim=3, psi=3, seed=2))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(num_samples=0, dim=2, psi=1), r"`num_samples` must be a positive integer; got 0"),
        (dict(num_samples=5, dim=0, psi=1), r"`dim` must be a positive integer; got 0"),
        (dict(num_samples=5, dim=2, psi=0), r"`psi` must be a positive integer power; got 0"),
        (dict(num_samples=5, dim=2, psi=1.5), r"`psi` must be a positive integer power; got 1.5"),
        (dict(num_samples=5, dim=2, psi=2, seed=-2), r"`seed` must be a non-negative"),
    ],
)
def test_gaussian_power_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        datasets.gaussian_power(**kwargs)


# ------------------------------------------------------- scikit-learn data


def _assert_standardised(train):
    np.testing.assert_allclose(train.mean(axis=0), 0.0, atol=1e-5)
    std = train.std(axis=0)
    np.testing.assert_allclose(std[std > 0], 1.0, rtol=1e-4)


@pytest.mark.parametrize(
    "loader,name,shapes",
    [
        (datasets.load_digits, "digits", (1258, 180, 359, 64)),
        (datasets.load_breast_cancer, "breast_cancer", (398, 57, 114, 30)),
        (datasets.load_wine, "wine", (125, 18, 35, 13)),
    ],
)
def test_sklearn_loaders(loader, name, shapes):
    split = loader()
    assert isinstance(split, datasets.Split) and split.name == name
    n_train, n_val, n_test, dim = shapes
    assert split.train.shape == (n_train, dim) and split.dim == dim
    assert split.validation.shape == (n_val, dim) and split.test.shape == (n_test, dim)
    for x in (split.train, split.validation, split.test):
        assert x.dtype == np.float32 and np.all(np.isfinite(x))
    _assert_standardised(split.train)
    # The split is fixed: loading again gives identical arrays.
    np.testing.assert_array_equal(split.test, loader().test)
    assert len(split.labels["train"]) == n_train
    assert name in repr(split) and f"({n_train}, {dim})" in repr(split)


def test_split_is_frozen():
    split = datasets.load_wine()
    with pytest.raises(dataclasses.FrozenInstanceError):
        split.train = split.test


def test_digits_dequantisation_and_seed():
    plain = datasets.load_digits(dequantize=False)
    # Integer pixels: few distinct values per feature, all finite (std 0 -> 1).
    assert len(np.unique(plain.train[:, 10])) <= 17
    assert np.all(np.isfinite(plain.train))
    noisy = datasets.load_digits(seed=0)
    assert len(np.unique(noisy.train[:, 10])) > 100
    np.testing.assert_array_equal(noisy.train, datasets.load_digits(seed=0).train)
    assert not np.allclose(noisy.train, datasets.load_digits(seed=1).train)
    # The split does not depend on the seed, only the noise does.
    np.testing.assert_array_equal(noisy.labels["test"], datasets.load_digits(seed=1).labels["test"])


def test_digits_classes_filter_keeps_split_membership():
    full = datasets.load_digits()
    part = datasets.load_digits(classes=[3, 1])
    for key in ("train", "validation", "test"):
        assert set(np.unique(part.labels[key])) <= {1, 3}
        expected = full.labels[key][np.isin(full.labels[key], [1, 3])]
        np.testing.assert_array_equal(part.labels[key], expected)
    _assert_standardised(part.train)
    sevens = datasets.load_digits(classes=7).labels["train"]
    assert sevens.tolist() == [7] * int(np.sum(full.labels["train"] == 7))


@pytest.mark.parametrize(
    "classes,message",
    [
        ([], r"`classes` must contain at least one digit label"),
        ([1, 10], r"`classes` must contain digit labels in 0..9; got 10"),
        ([1.5], r"`classes` must contain digit labels in 0..9; got 1.5"),
        (3.5, r"`classes` must be an iterable of digit labels in 0..9; got 3.5"),
    ],
)
def test_digits_class_errors(classes, message):
    with pytest.raises(ValueError, match=message):
        datasets.load_digits(classes=classes)


def test_digits_by_class():
    split = datasets.load_digits_by_class([0, 1, 2], seed=0)
    assert isinstance(split, datasets.AnomalySplit)
    for key in ("train", "validation", "test"):
        assert set(np.unique(split.labels[key])) == {0, 1, 2}
    assert set(np.unique(split.labels["anomalous"])) == set(range(3, 10))
    assert split.anomalous.shape == (len(split.labels["anomalous"]), 64)
    # Normal test + anomalous = the whole fixed test split.
    assert len(split.test) + len(split.anomalous) == 359
    _assert_standardised(split.train)
    # Anomalies are standardised with the normal training statistics.
    same = datasets.load_digits(classes=[0, 1, 2], seed=0)
    np.testing.assert_array_equal(split.test, same.test)
    assert "anomalous=" in repr(split)


def test_digits_by_class_errors():
    with pytest.raises(ValueError, match=r"`normal_classes` must leave at least one digit"):
        datasets.load_digits_by_class(range(10))
    with pytest.raises(ValueError, match=r"`normal_classes` must contain at least one"):
        datasets.load_digits_by_class([])


def test_subsample_split_and_array():
    split = datasets.load_digits()
    small = datasets.subsample(split, num_train=100, seed=5)
    assert small.train.shape == (100, 64) and len(small.labels["train"]) == 100
    assert small.validation is split.validation and small.test is split.test
    # Nested subsets for one seed; rows come from the original train split.
    bigger = datasets.subsample(split, num_train=500, seed=5)
    rows = {r.tobytes() for r in bigger.train}
    assert all(r.tobytes() in rows for r in small.train)
    assert not np.array_equal(small.train, datasets.subsample(split, 100, seed=6).train)
    arr = datasets.subsample(split.train, num_train=10, seed=0)
    np.testing.assert_array_equal(arr, datasets.subsample(split, 10, seed=0).train)
    anomaly = datasets.subsample(datasets.load_digits_by_class([0]), num_train=50)
    assert isinstance(anomaly, datasets.AnomalySplit) and anomaly.train.shape[0] == 50


def test_subsample_errors():
    split = datasets.load_wine()
    with pytest.raises(ValueError, match=r"`num_train` must be a positive integer; got 0"):
        datasets.subsample(split, num_train=0)
    with pytest.raises(ValueError, match=r"`num_train` must be at most .*\(125\); got 126"):
        datasets.subsample(split, num_train=126)
    with pytest.raises(TypeError, match=r"`split_or_array` must be a `Split` or a numpy array"):
        datasets.subsample([[1.0, 2.0]], num_train=1)


# ------------------------------------------------- UCI loaders on fixtures


def _write_power(root, n=2000, columns=8):
    (root / "power").mkdir(parents=True)
    data = np.random.default_rng(0).normal(size=(n, columns)) * np.arange(1, columns + 1)
    np.save(root / "power" / "data.npy", data)
    return data


def test_power_matches_maf_procedure(tmp_path):
    raw = _write_power(tmp_path)
    split = datasets.load_power(tmp_path)
    assert split.name == "power"
    assert split.train.shape == (1620, 6) and split.validation.shape == (180, 6)
    assert split.test.shape == (200, 6) and split.train.dtype == np.float32
    # MAF's steps, literally: shuffle, delete col 3 then col 1, noise drawn as
    # voltage, gap, sub-metering, stacked as gap, voltage, sub-metering, time.
    rng = np.random.RandomState(42)
    data = raw.copy()
    rng.shuffle(data)
    data = np.delete(np.delete(data, 3, axis=1), 1, axis=1)
    voltage, gap, sm = 0.01 * rng.rand(2000, 1), 0.001 * rng.rand(2000, 1), rng.rand(2000, 3)
    data = data + np.hstack((gap, voltage, sm, np.zeros((2000, 1))))
    test, rest = data[-200:], data[:-200]
    both = rest  # train + validation
    expected_test = (test - both.mean(axis=0)) / both.std(axis=0)
    np.testing.assert_allclose(split.test, expected_test, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(split.train, ((rest - rest.mean(0)) / rest.std(0))[:1620], atol=1e-5)
    # Standardised on train + validation together.
    joint = np.vstack((split.train, split.validation)).astype(np.float64)
    np.testing.assert_allclose(joint.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(joint.std(axis=0), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(split.train, datasets.load_power(str(tmp_path)).train)


def test_power_bad_shapes(tmp_path):
    _write_power(tmp_path, columns=7)
    with pytest.raises(ValueError, match=r"POWER: expected 8 columns in .*got shape \(2000, 7\)"):
        datasets.load_power(tmp_path)
    other = tmp_path / "small"
    _write_power(other, n=10)
    with pytest.raises(ValueError, match=r"POWER: need at least 11 rows .*got 10"):
        datasets.load_power(other)


def test_miniboone(tmp_path):
    (tmp_path / "miniboone").mkdir()
    raw = np.random.default_rng(1).gamma(2.0, size=(500, 43))
    np.save(tmp_path / "miniboone" / "data.npy", raw)
    split = datasets.load_miniboone(tmp_path)
    assert split.train.shape == (405, 43) and split.validation.shape == (45, 43)
    assert split.test.shape == (50, 43) and split.name == "miniboone"
    # No shuffling: test is the last 10% of rows, scaled by train+validation stats.
    rest = raw[:-50]
    expected = (raw[-50:] - rest.mean(axis=0)) / rest.std(axis=0)
    np.testing.assert_allclose(split.test, expected, rtol=1e-5, atol=1e-5)
    np.save(tmp_path / "miniboone" / "data.npy", raw[:, 0])
    with pytest.raises(ValueError, match=r"MINIBOONE: expected a 2-D array .*got shape \(500,\)"):
        datasets.load_miniboone(tmp_path)


def _write_hepmass(root, n_train=400, n_test=200):
    rng = np.random.default_rng(2)
    names = ["# label"] + [f"f{i}" for i in range(27)] + ["mass"]

    def rows(n):
        data = np.column_stack(
            [rng.integers(0, 2, n), rng.normal(size=(n, 27)), np.full(n, 1000.0)]
        )
        data[:10, 4] = data[:, 4].min() - 1.0  # f3: smallest value repeated -> dropped.
        data[:10, 6] = data[:, 6].max() + 1.0  # f5: largest value repeated -> kept.
        data[:10, 0] = 1.0
        return data

    train, test = rows(n_train), rows(n_test)
    (root / "hepmass").mkdir(parents=True)
    np.savetxt(
        root / "hepmass" / "1000_train.csv",
        train,
        delimiter=",",
        header=",".join(names),
        comments="",
        fmt="%.10g",
    )
    # The test file carries one extra trailing (empty) column.
    lines = [",".join(names) + ","] + [",".join(f"{v:.10g}" for v in r) + "," for r in test]
    (root / "hepmass" / "1000_test.csv").write_text("\n".join(lines) + "\n")
    return train, test


def test_hepmass(tmp_path):
    train_raw, test_raw = _write_hepmass(tmp_path)
    split = datasets.load_hepmass(tmp_path)
    signal = train_raw[train_raw[:, 0] == 1][:, 1:]
    n_val = int(0.1 * len(signal))
    # 28 features minus f3 (repeated smallest value) and mass (constant).
    assert split.train.shape == (len(signal) - n_val, 26)
    assert split.validation.shape == (n_val, 26)
    assert split.test.shape == (int((test_raw[:, 0] == 1).sum()), 26)
    keep = [j for j in range(28) if j not in (3, 27)]
    mean, std = signal[:, keep].mean(axis=0), signal[:, keep].std(axis=0, ddof=1)
    expected_test = (test_raw[test_raw[:, 0] == 1][:, 1:][:, keep] - mean) / std
    np.testing.assert_allclose(split.test, expected_test, rtol=1e-5, atol=1e-5)
    # Standardised with the whole training file, before the validation cut.
    joint = np.vstack((split.train, split.validation)).astype(np.float64)
    np.testing.assert_allclose(joint.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(joint.std(axis=0, ddof=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(split.validation, datasets.load_hepmass(tmp_path).validation)


def test_hepmass_too_few_signal_rows(tmp_path):
    _write_hepmass(tmp_path)
    path = tmp_path / "hepmass" / "1000_train.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:6]) + "\n")  # header + 5 signal rows
    with pytest.raises(ValueError, match=r"HEPMASS: need at least 10 signal rows .*got 5"):
        datasets.load_hepmass(tmp_path)


def test_hepmass_column_mismatch(tmp_path):
    _write_hepmass(tmp_path)
    path = tmp_path / "hepmass" / "1000_test.csv"
    lines = path.read_text().splitlines()
    lines[0] = lines[0].replace("f0,", "g0,")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"HEPMASS: after dropping its label and last column"):
        datasets.load_hepmass(tmp_path)
    path.write_text(lines[0] + "\n")
    with pytest.raises(ValueError, match=r"HEPMASS: no data rows"):
        datasets.load_hepmass(tmp_path)


def test_gas(tmp_path):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(3)
    n = 300
    s1 = rng.normal(size=n)
    frame = pd.DataFrame(
        {
            "Time": np.arange(n, dtype=float),
            "Meth": rng.normal(size=n),
            "Eth": rng.normal(size=n),
            "s1": s1,
            "s2": 2.0 * s1 + 0.01 * rng.normal(size=n),  # corr(s1, s2) > 0.98
            "s3": rng.normal(size=n),
            "s4": -rng.normal(size=n),
            "s5": rng.gamma(2.0, size=n),
        }
    )
    (tmp_path / "gas").mkdir()
    frame.to_pickle(tmp_path / "gas" / "ethylene_CO.pickle")
    split = datasets.load_gas(tmp_path)
    # s1 is the first column of a correlated pair, so it goes; s2 stays.
    assert split.train.shape == (243, 4) and split.validation.shape == (27, 4)
    assert split.test.shape == (30, 4) and split.name == "gas"
    kept = frame[["s2", "s3", "s4", "s5"]]
    expected = ((kept - kept.mean()) / kept.std()).to_numpy()
    np.testing.assert_allclose(split.test, expected[-30:], rtol=1e-5, atol=1e-5)
    frame["s1"].to_pickle(tmp_path / "gas" / "ethylene_CO.pickle")
    with pytest.raises(ValueError, match=r"GAS: expected a pandas DataFrame"):
        datasets.load_gas(tmp_path)
    frame.drop(columns="Eth").to_pickle(tmp_path / "gas" / "ethylene_CO.pickle")
    with pytest.raises(ValueError, match=r"GAS: columns \['Eth'\] not found"):
        datasets.load_gas(tmp_path)


def test_bsds300(tmp_path):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(4)
    arrays = {
        k: rng.normal(size=(m, 63)) for k, m in [("train", 50), ("validation", 10), ("test", 20)]
    }
    (tmp_path / "BSDS300").mkdir()
    with h5py.File(tmp_path / "BSDS300" / "BSDS300.hdf5", "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    split = datasets.load_bsds300(tmp_path)
    assert split.train.shape == (50, 63) and split.train.dtype == np.float32
    np.testing.assert_allclose(split.test, arrays["test"], rtol=1e-6)
    with h5py.File(tmp_path / "BSDS300" / "BSDS300.hdf5", "w") as f:
        f.create_dataset("train", data=arrays["train"])
    with pytest.raises(ValueError, match=r"BSDS300: datasets \['validation', 'test'\] not found"):
        datasets.load_bsds300(tmp_path)


@pytest.mark.parametrize(
    "loader,dataset,relpath",
    [
        (datasets.load_power, "POWER", "power/data.npy"),
        (datasets.load_gas, "GAS", "gas/ethylene_CO.pickle"),
        (datasets.load_hepmass, "HEPMASS", "hepmass/1000_train.csv"),
        (datasets.load_miniboone, "MINIBOONE", "miniboone/data.npy"),
        (datasets.load_bsds300, "BSDS300", "BSDS300/BSDS300.hdf5"),
    ],
)
def test_uci_missing_files(tmp_path, loader, dataset, relpath):
    with pytest.raises(FileNotFoundError, match=rf"{dataset}: expected file .*{relpath}.*MAF"):
        loader(tmp_path)
    with pytest.raises(FileNotFoundError, match=rf"{dataset}: data directory .* does not exist"):
        loader(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"Papamakarios et al.*zenodo"):
        loader(tmp_path / "nowhere")


def test_hepmass_missing_test_file(tmp_path):
    _write_hepmass(tmp_path)
    (tmp_path / "hepmass" / "1000_test.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"HEPMASS: expected file .*1000_test.csv"):
        datasets.load_hepmass(tmp_path)


@pytest.mark.parametrize(
    "loader,module,relpath",
    [
        (datasets.load_gas, "pandas", ("gas", "ethylene_CO.pickle")),
        (datasets.load_bsds300, "h5py", ("BSDS300", "BSDS300.hdf5")),
    ],
)
def test_optional_dependency_errors(tmp_path, monkeypatch, loader, module, relpath):
    (tmp_path / relpath[0]).mkdir()
    (tmp_path / relpath[0] / relpath[1]).write_bytes(b"placeholder")
    # A None entry in sys.modules makes `import module` raise ImportError.
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=rf"needs the optional package `{module}`.*pip install"):
        loader(tmp_path)


# ----------------------------------------------------------------- registry


def test_available_lists_every_dataset():
    expected = {
        "moons",
        "four_circles",
        "pinwheel",
        "line",
        "checkerboard",
        "two_rectangles",
        "two_spirals",
        "eight_gaussians",
        "gaussian_power",
        "rotated_moons",
        "bimodal_sine",
        "digits",
        "breast_cancer",
        "wine",
        "power",
        "gas",
        "hepmass",
        "miniboone",
        "bsds300",
    }
    assert set(datasets.available()) == expected and len(datasets.available()) == 19


@pytest.mark.parametrize("name", sorted(toy.TOY_DATASETS))
def test_load_toy(name):
    split = datasets.load(name, num_samples=400, seed=1)
    assert split.name == name and split.labels is None
    assert split.train.shape == (400, 2)
    assert split.validation.shape == (100, 2) and split.test.shape == (100, 2)
    # Three different seeds: held-out sets are not copies of the training set.
    assert not np.allclose(split.validation, split.test)
    assert not np.allclose(split.train[:100], split.validation)
    np.testing.assert_array_equal(split.test, datasets.load(name, num_samples=400, seed=1).test)
    assert not np.allclose(split.test, datasets.load(name, num_samples=400, seed=2).test)


def test_load_passes_kwargs_and_defaults():
    assert datasets.load("moons").train.shape == (1000, 2)
    exact = datasets.load("line", num_samples=20, noise=0.0)
    np.testing.assert_array_equal(exact.train[:, 0], exact.train[:, 1])
    power = datasets.load("gaussian_power", num_samples=40, dim=3, psi=2)
    assert power.train.shape == (40, 3) and np.all(power.test >= 0)
    digits = datasets.load("DIGITS", num_samples=100, classes=[0, 1])
    assert digits.train.shape == (100, 64) and set(digits.labels["train"]) <= {0, 1}
    assert datasets.load("wine").train.shape == (125, 13)


def test_load_uci_with_data_dir(tmp_path):
    _write_power(tmp_path)
    assert datasets.load("power", data_dir=tmp_path).train.shape == (1620, 6)
    assert datasets.load("power", data_dir=tmp_path, num_samples=50).train.shape == (50, 6)


def test_load_errors():
    with pytest.raises(ValueError, match=r"Unknown dataset 'foo'; available: moons, .*bsds300"):
        datasets.load("foo")
    with pytest.raises(ValueError, match=r"Dataset 'gaussian_power' needs .*missing \['psi'\]"):
        datasets.load("gaussian_power", dim=2)
    with pytest.raises(ValueError, match=r"`num_samples` must be a positive integer; got -3"):
        datasets.load("moons", num_samples=-3)
    for name in UCI_NAMES:
        with pytest.raises(ValueError, match=rf"Dataset '{name}' needs a `data_dir`"):
            datasets.load(name)


def test_uci_require_file_rejects_none():
    with pytest.raises(ValueError, match=r"POWER: `data_dir` is required; got None"):
        uci.load_power(None)


# -- conditional toys --------------------------------------------------------------------


def test_conditional_toys_return_aligned_conditions():
    for name, dim in (("rotated_moons", 2), ("bimodal_sine", 1)):
        split = datasets.load(name, num_samples=40, seed=3)
        assert split.train.shape == (40, dim) and split.test.shape == (10, dim)
        for part in ("train", "validation", "test"):
            c = split.conditions[part]
            assert c.dtype == np.float32 and c.shape == (len(getattr(split, part)), 1)
        again = datasets.load(name, num_samples=40, seed=3)
        np.testing.assert_array_equal(again.conditions["train"], split.conditions["train"])


def test_rotated_moons_rotates_by_the_condition():
    y, c = datasets.rotated_moons(2000, seed=0, noise=0.0)
    # Rotation keeps the norm: |y| does not depend on the angle, so the mean norm is the
    # same for small and large conditions (within sampling error of 2000 points).
    small, large = np.abs(c[:, 0]) < 0.3, np.abs(c[:, 0]) > 0.7
    norm = np.linalg.norm(y, axis=1)
    assert abs(norm[small].mean() - norm[large].mean()) < 0.15
    # ... while the direction of the mean point turns with c.
    pos, neg = c[:, 0] > 0.7, c[:, 0] < -0.7
    assert np.dot(y[pos].mean(0), y[neg].mean(0)) < 0.5 * np.linalg.norm(y[pos].mean(0)) ** 2


def test_bimodal_sine_log_prob_is_the_generating_density():
    y, c = datasets.bimodal_sine(20000, seed=1, noise=0.1)
    # Sample mean of log p(y | c) = minus the conditional entropy: mixture of two
    # well-separated N(., 0.1^2) halves -> h = log 2 + 0.5 log(2 pi e 0.01).
    mean = datasets.conditional.conditional_log_prob("bimodal_sine", y, c).mean()
    expected = -(np.log(2.0) + 0.5 * np.log(2 * np.pi * np.e * 0.01))
    assert abs(mean - expected) < 0.02
    with pytest.raises(ValueError, match="`name` must be 'bimodal_sine'"):
        datasets.conditional.conditional_log_prob("rotated_moons", y, c)
