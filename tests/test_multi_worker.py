"""`fit_distributed`: the training loop for MultiWorkerMirroredStrategy.

The multi-worker tests start real worker processes (tests/multi_worker_worker.py)
on 127.0.0.1 with one TF_CONFIG each, and compare their final weights with each
other and with this process' run of the same loop on one device over the same
global batches.
"""

import json
import os
import runpy
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfp_flows as tff
from tfp_flows.keras import FlowModel
from tfp_flows.keras.distributed import fit_distributed, needs_own_loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "multi_worker_worker.py")
CRASH_EXIT_CODE = 17
TIMEOUT = 240
FLOW = dict(event_size=2, hidden_units=(8,), num_layers=2)


def _model(strategy=None, jit_compile=False, seed=0, **kwargs):
    scope = (strategy or tf.distribute.get_strategy()).scope()
    with scope:
        model = FlowModel.from_flow("real_nvp", seed=seed, **FLOW, **kwargs)
        model.compile(keras.optimizers.Adam(1e-2), jit_compile=jit_compile)
    return model


def _data(n=101, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 2)).astype("float32")


def _max_diff(a, b):
    return max(float(np.max(np.abs(u - v))) for u, v in zip(a, b, strict=True))


# -- single process -----------------------------------------------------------------


def test_needs_own_loop(mirrored_strategy):
    assert not needs_own_loop(tf.distribute.get_strategy())
    assert not needs_own_loop(mirrored_strategy)
    assert not needs_own_loop()
    with pytest.raises(TypeError, match="`strategy` must be a tf.distribute.Strategy"):
        needs_own_loop("mirrored")


def test_matches_keras_fit_on_one_device():
    x = _data()
    reference = _model()
    init = reference.get_weights()
    keras_history = reference.fit(x, batch_size=16, epochs=2, shuffle=False, verbose=0,
                                  validation_data=(x[:33],))
    model = _model()
    model.set_weights(init)
    history = fit_distributed(model, x, batch_size=16, epochs=2, shuffle=False, verbose=0,
                              validation_data=(x[:33],))
    assert isinstance(history, keras.callbacks.History)
    assert _max_diff(model.get_weights(), reference.get_weights()) < 1e-6
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(history.history[key], keras_history.history[key], rtol=1e-5)


def test_mirrored_equals_one_device_with_uneven_batches(mirrored_strategy):
    # 31 rows in global batches of 15: each batch splits 8/7 over the two replicas and
    # the last batch has one row, so one replica gets none. Nothing is dropped.
    x = _data(n=31)
    single = _model()
    init = single.get_weights()
    h1 = fit_distributed(single, x, batch_size=15, epochs=1, verbose=0,
                         validation_data=(x[:9],))
    mirrored = _model(mirrored_strategy)
    mirrored.set_weights(init)
    h2 = fit_distributed(mirrored, x, batch_size=15, epochs=1, verbose=0,
                         validation_data=(x[:9],))
    assert int(mirrored.optimizer.iterations.numpy()) == 3
    assert _max_diff(mirrored.get_weights(), single.get_weights()) < 1e-5
    np.testing.assert_allclose(h2.history["loss"], h1.history["loss"], rtol=1e-5)
    np.testing.assert_allclose(h2.history["val_loss"], h1.history["val_loss"], rtol=1e-5)
    np.testing.assert_allclose(h2.history["val_loss"][0],
                               -np.mean(mirrored.log_prob(x[:9])), rtol=1e-5)


@pytest.mark.slow  # ~25 s: XLA compiles the step on two replicas
def test_jit_compile_under_mirrored_strategy(mirrored_strategy):
    # Keras 3's own jit-compiled step fails over logical CPU replicas (docs/scaling.md);
    # this loop compiles only the per-replica gradient, not the all-reduce.
    x = _data(n=31)
    single = _model()
    init = single.get_weights()
    fit_distributed(single, x, batch_size=15, epochs=1, verbose=0)
    mirrored = _model(mirrored_strategy, jit_compile=True)
    mirrored.set_weights(init)
    fit_distributed(mirrored, x, batch_size=15, epochs=1, verbose=0)
    assert _max_diff(mirrored.get_weights(), single.get_weights()) < 1e-4


def test_sample_weights_and_weightless_replicas(mirrored_strategy):
    # One global batch of 16 rows whose last 8 (all of replica 1) weigh 0: the step is
    # one-device training on the first 8 rows.
    x = _data(n=16)
    w = np.r_[np.ones(8), np.zeros(8)].astype("float32")
    single = _model()
    init = single.get_weights()
    fit_distributed(single, x[:8], batch_size=8, epochs=1, verbose=0)
    mirrored = _model(mirrored_strategy)
    mirrored.set_weights(init)
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(16, "float32"), w)).batch(16)
    history = fit_distributed(mirrored, ds, epochs=1, verbose=0)
    assert _max_diff(mirrored.get_weights(), single.get_weights()) < 1e-5
    assert np.isfinite(history.history["loss"][0])


def test_callbacks_early_stopping_and_stop_training():
    x = _data(n=32)

    class StopAtEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = epoch == 1

    model = _model()
    stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=0, min_delta=10.0)
    history = fit_distributed(model, x, batch_size=16, epochs=5, verbose=0,
                              validation_data=(x[:8],), callbacks=[stopper])
    assert history.epoch == [0, 1] and stopper.stopped_epoch == 1
    history = fit_distributed(model, x, batch_size=16, epochs=5, initial_epoch=0, verbose=0,
                              callbacks=[StopAtEpoch()])
    assert history.epoch == [0, 1] and sorted(history.history) == ["loss"]
    assert int(model.optimizer.iterations.numpy()) == 8


def test_backup_and_restore_resumes_on_one_device(tmp_path):
    # Also the test of `tfp_compat.pop_restored_initial_epoch` (BackupAndRestore's epoch).
    x = _data(n=32)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("interrupted")

    reference = _model()
    init = reference.get_weights()
    fit_distributed(reference, x, batch_size=16, epochs=4, verbose=0)
    model = _model()
    model.set_weights(init)
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="interrupted"):
        fit_distributed(model, x, batch_size=16, epochs=4, verbose=0,
                        callbacks=[backup, Interrupt()])
    resumed = _model()  # a fresh process would start from scratch
    history = fit_distributed(resumed, x, batch_size=16, epochs=4, verbose=0,
                              callbacks=[keras.callbacks.BackupAndRestore(
                                  str(tmp_path / "backup"))])
    assert history.epoch == [2, 3]
    assert int(resumed.optimizer.iterations.numpy()) == 8
    assert _max_diff(resumed.get_weights(), reference.get_weights()) < 1e-6
    assert not (tmp_path / "backup").exists()  # deleted after a finished run
    assert getattr(resumed, "_initial_epoch", None) is None  # a later fit starts afresh


def test_objective_without_data(mirrored_strategy):
    with mirrored_strategy.scope():
        model = FlowModel(tff.flows.real_nvp(2, num_layers=2, hidden_units=(8,)),
                          objective=tff.keras.ReverseKL(
                              lambda z: -0.5 * tf.reduce_sum(z**2, -1), num_samples=16))
        model.compile(keras.optimizers.Adam(1e-2))
    history = fit_distributed(model, steps_per_epoch=3, epochs=1, verbose=0)
    assert int(model.optimizer.iterations.numpy()) == 3
    assert np.isfinite(history.history["loss"][0])


def test_bad_arguments():
    x = _data(n=8)
    model = _model()
    uncompiled = FlowModel.from_flow("real_nvp", **FLOW)
    ds = tf.data.Dataset.from_tensor_slices(x).batch(4)
    with pytest.raises(ValueError, match="`model` must be compiled"):
        fit_distributed(uncompiled, x)
    with pytest.raises(TypeError, match="`model` must be a keras.Model; got str"):
        fit_distributed("model", x)
    with pytest.raises(ValueError, match="`x` is required: MaximumLikelihood"):
        fit_distributed(model)
    with pytest.raises(ValueError, match="`batch_size` must be None when `x` is a tf.data"):
        fit_distributed(model, ds, batch_size=4)
    with pytest.raises(ValueError, match="`batch_size` must be a positive integer; got 0"):
        fit_distributed(model, x, batch_size=0)
    with pytest.raises(ValueError, match="`epochs` must be a non-negative integer; got -1"):
        fit_distributed(model, x, epochs=-1)
    with pytest.raises(ValueError, match="`steps_per_epoch` must be a positive integer"):
        fit_distributed(model, x, steps_per_epoch=0)
    with pytest.raises(ValueError, match="`verbose` must be 'auto', 0, 1 or 2; got 3"):
        fit_distributed(model, x, verbose=3)
    with pytest.raises(TypeError, match="`callbacks` must be keras.callbacks.Callback"):
        fit_distributed(model, x, callbacks=[print])
    with pytest.raises(ValueError, match=r"`x` arrays must all have the same number of rows; "
                                         r"got \[7, 8\]"):
        fit_distributed(model, x, x[:7])
    with pytest.raises(ValueError, match="`validation_data` must have at least one row"):
        fit_distributed(model, x, validation_data=(x[:0],))


# -- several worker processes -------------------------------------------------------


def _free_ports(count):
    socks = [socket.socket() for _ in range(count)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _cluster_configs(tmp_path, ports, **cfg):
    workers = [f"127.0.0.1:{p}" for p in ports]
    paths = []
    for i in range(len(ports)):
        c = dict(cfg, tf_config={"cluster": {"worker": workers},
                                 "task": {"type": "worker", "index": i}},
                 out=str(tmp_path / f"result{i}"))
        path = tmp_path / f"worker{i}.json"
        path.write_text(json.dumps(c))
        paths.append(path)
    return paths


def _start(paths, crash=None):
    """Starts one worker process per config; `crash` maps worker index -> crash step."""
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
               OMP_NUM_THREADS="1")
    procs = []
    for i, path in enumerate(paths):
        if crash and i in crash:
            cfg = json.loads(path.read_text())
            cfg["crash_at_step"] = crash[i]
            path = path.with_name(path.stem + "_crash.json")
            path.write_text(json.dumps(cfg))
        log = open(path.with_suffix(".log"), "w")  # noqa: SIM115 (closed in _wait)
        procs.append((subprocess.Popen([sys.executable, WORKER, str(path)], env=env,
                                       stdout=log, stderr=subprocess.STDOUT), log))
    return procs


def _wait(procs, timeout=TIMEOUT, until_one_exits=False):
    """Waits for all workers (or the first to exit); kills all on timeout or on request."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            codes = [p.poll() for p, _ in procs]
            if all(c is not None for c in codes):
                return codes
            if until_one_exits and any(c is not None for c in codes):
                return codes
            if any(c not in (None, 0) for c in codes) and not until_one_exits:
                break  # one worker failed: the others would wait for it forever
            time.sleep(0.5)
        logs = "\n".join(open(log.name).read()[-3000:] for _, log in procs)
        raise AssertionError(f"workers did not finish (exit codes {codes}):\n{logs}")
    finally:
        for p, log in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()


def _result(tmp_path, i):
    weights = np.load(tmp_path / f"result{i}.npz")
    info = json.loads((tmp_path / f"result{i}.json").read_text())
    return [weights[f"arr_{k}"] for k in range(len(weights.files))], info


def _setup(tmp_path, n=61, epochs=2, **cfg):
    """Data, initial weights and worker configs; returns (configs, x, initial weights)."""
    x = _data(n)
    np.savez(tmp_path / "data.npz", x=x, validation=x[:10])
    init = _model().get_weights()
    np.savez(tmp_path / "init.npz", **{f"w{i}": w for i, w in enumerate(init)})
    cfg = dict(data=str(tmp_path / "data.npz"), init=str(tmp_path / "init.npz"),
               batch_size=15, epochs=epochs, **cfg)
    return _cluster_configs(tmp_path, _free_ports(2), **cfg), x, init


def _one_device(x, init, epochs):
    """The same run on one device in this process: same global batches, same seeds."""
    model = _model()
    model.set_weights(init)
    history = fit_distributed(model, x, batch_size=15, epochs=epochs, verbose=0,
                              validation_data=(x[:10],))
    return model.get_weights(), history.history


def test_two_workers_match_one_device(tmp_path):
    # 61 rows in global batches of 15: 8/7 rows per worker, and in the last batch
    # (one row) worker 1 gets none.
    paths, x, init = _setup(tmp_path)
    assert _wait(_start(paths)) == [0, 0]
    (w0, r0), (w1, r1) = _result(tmp_path, 0), _result(tmp_path, 1)
    assert r0["num_replicas"] == 2 and r0["iterations"] == r1["iterations"] == 10
    for a, b in zip(w0, w1, strict=True):
        np.testing.assert_array_equal(a, b)  # one all-reduce: bitwise the same update
    assert r0["history"] == r1["history"]
    # Replica ids are global across workers, so the workers draw different noise.
    assert {r0["replica_id"], r1["replica_id"]} == {0, 1}
    assert not np.allclose(r0["noise"], r1["noise"])
    weights, history = _one_device(x, init, epochs=2)
    assert _max_diff(w0, weights) < 1e-5
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(r0["history"][key], history[key], rtol=1e-5)
    assert r0["history"]["loss"][1] < r0["history"]["loss"][0]


@pytest.mark.slow
def test_two_workers_resume_from_backup_after_a_crash(tmp_path):
    backup, checkpoint = tmp_path / "backup", tmp_path / "ckpt.weights.h5"
    paths, x, init = _setup(tmp_path, epochs=3, backup_dir=str(backup),
                            checkpoint=str(checkpoint))
    # Worker 1 dies after step 7 (in the second epoch; the first was backed up).
    codes = _wait(_start(paths, crash={1: 7}), until_one_exits=True)
    assert codes[1] == CRASH_EXIT_CODE, codes
    meta = json.loads((backup / "training_metadata.json").read_text())
    assert meta["epoch"] == 1
    saved = _model()
    saved.optimizer.build(saved.trainable_variables)
    saved.load_weights(str(backup / "latest.weights.h5"))  # the backup is readable
    assert int(saved.optimizer.iterations.numpy()) == 5
    # MultiWorkerMirroredStrategy cannot replace one worker: restart the whole cluster.
    assert _wait(_start(paths)) == [0, 0]
    (w0, r0), (w1, r1) = _result(tmp_path, 0), _result(tmp_path, 1)
    assert r0["iterations"] == r1["iterations"] == 15
    assert len(r0["history"]["loss"]) == 2  # epochs 1 and 2 only: resumed, not restarted
    weights, history = _one_device(x, init, epochs=3)
    # The backup holds weights, optimizer state and epoch, and the batches and seeds
    # depend only on the epoch and step: the resumed run is the uninterrupted one, up
    # to float32 reassociation in the all-reduce (1e-5 absolute on O(1) weights).
    assert _max_diff(w0, weights) < 1e-5
    assert _max_diff(w1, weights) < 1e-5
    np.testing.assert_allclose(r0["history"]["loss"], history["loss"][1:], rtol=1e-5)
    final = _model()
    final.optimizer.build(final.trainable_variables)
    final.load_weights(str(checkpoint))  # the chief's ModelCheckpoint is readable
    assert _max_diff(final.get_weights(), w0) == 0.0


@pytest.mark.slow
def test_model_fit_under_multi_worker(tmp_path):
    paths, x, init = _setup(tmp_path, mode="fit")
    assert _wait(_start(paths)) == [0, 0]
    (w0, _), (w1, _) = _result(tmp_path, 0), _result(tmp_path, 1)
    assert _max_diff(w0, w1) == 0.0
    weights, _ = _one_device(x, init, epochs=2)
    assert _max_diff(w0, weights) < 1e-5


# -- benchmarks/accelerator_check.py ------------------------------------------------


@pytest.mark.slow  # ~16 s: the whole benchmark script on CPU; its pieces are tested above
def test_accelerator_check_on_cpu(tmp_path):
    # This process has two logical CPU devices (conftest): both get a row.
    script = runpy.run_path(os.path.join(ROOT, "benchmarks", "accelerator_check.py"))
    code = script["main"](["--flows", "real_nvp", "maf", "--repeats", "1",
                           "--out", str(tmp_path)])
    text = (tmp_path / "results" / "accelerator_check.md").read_text()
    rows = json.loads((tmp_path / "results" / "accelerator_check.json").read_text())["rows"]
    assert [(r["flow"], r["device"]) for r in rows] == [
        (f, d) for f in ("real_nvp", "maf") for d in ("/device:CPU:0", "/device:CPU:1")]
    assert code == 0, text
    assert all(r["status"] == "ok" and r["step (s)"] > 0 for r in rows), text
    assert "| real_nvp | /device:CPU:0 | ok |" in text
