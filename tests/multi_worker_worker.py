"""One worker of a `MultiWorkerMirroredStrategy` cluster, run by tests/test_multi_worker.py.

Usage: `python tests/multi_worker_worker.py CONFIG.json`. The config holds the
worker's `tf_config` (written to TF_CONFIG before TensorFlow starts), the data
and initial weights (`.npz` files written by the test), training arguments, and
`out` (an `.npz` of the final weights plus a `.json` of the history and
timings). `crash_at_step` makes the worker `os._exit(17)` right after that
optimizer step, to test `BackupAndRestore`. `mode` is "loop" (`fit_distributed`)
or "fit" (`model.fit`).
"""

import json
import os
import sys
import time

CRASH_EXIT_CODE = 17


def main(path):
    with open(path) as f:
        cfg = json.load(f)
    os.environ["TF_CONFIG"] = json.dumps(cfg["tf_config"])
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()

    import keras
    import numpy as np

    import tfp_flows
    from tfp_flows.keras.distributed import fit_distributed

    data = np.load(cfg["data"])
    init = np.load(cfg["init"])
    with strategy.scope():
        model = tfp_flows.keras.FlowModel.from_flow(
            "real_nvp", event_size=2, hidden_units=(8,), num_layers=2, seed=cfg.get("seed", 0))
        model.compile(keras.optimizers.Adam(cfg.get("learning_rate", 1e-2)),
                      jit_compile=cfg.get("jit_compile", False))
    model.set_weights([init[f"w{i}"] for i in range(len(init.files))])

    timer = _step_timer(cfg.get("crash_at_step"))
    callbacks = [timer]
    if cfg.get("backup_dir"):
        callbacks.append(keras.callbacks.BackupAndRestore(cfg["backup_dir"],
                                                          delete_checkpoint=False))
    if cfg.get("checkpoint"):
        callbacks.append(keras.callbacks.ModelCheckpoint(cfg["checkpoint"],
                                                         save_weights_only=True))
    kwargs = dict(batch_size=cfg["batch_size"], epochs=cfg["epochs"], callbacks=callbacks,
                  verbose=0, shuffle=cfg.get("shuffle", True))
    if "validation" in data.files:
        kwargs["validation_data"] = (data["validation"],)
    start = time.perf_counter()
    if cfg.get("mode", "loop") == "fit":
        history = model.fit(data["x"], **kwargs)
    else:
        history = fit_distributed(model, data["x"], **kwargs)
    elapsed = time.perf_counter() - start

    def replica_noise():
        ctx = tf.distribute.get_replica_context()
        seed = tfp_flows.keras.objectives.seed_for_step(0, 5)
        return ctx.replica_id_in_sync_group, tf.random.stateless_normal([3], seed)

    ids, noise = strategy.run(tf.function(replica_noise))
    np.savez(cfg["out"] + ".npz", *model.get_weights())
    with open(cfg["out"] + ".json", "w") as f:
        json.dump({"history": history.history, "fit_seconds": elapsed,
                   "step_seconds": timer.median(),
                   "iterations": int(model.optimizer.iterations.numpy()),
                   "replica_id": int(strategy.experimental_local_results(ids)[0]),
                   "noise": np.asarray(strategy.experimental_local_results(noise)[0]).tolist(),
                   "num_replicas": strategy.num_replicas_in_sync}, f)


def _step_timer(crash_at_step):
    """A callback timing optimizer steps (median after the first, which traces) that
    `os._exit`s after step `crash_at_step` (if not None)."""
    import keras

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times, self._start = [], None

        def on_train_batch_begin(self, batch, logs=None):
            self._start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self._start)
            if crash_at_step is not None and int(
                    self.model.optimizer.iterations.numpy()) == crash_at_step:
                os._exit(CRASH_EXIT_CODE)

        def median(self):
            t = sorted(self.times[1:]) or [float("nan")]
            return t[len(t) // 2]

    return StepTimer()


if __name__ == "__main__":
    main(sys.argv[1])
