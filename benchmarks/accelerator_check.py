"""Accelerator check: one `jit_compile=True` training step of every registered flow on
every visible device, and under `MirroredStrategy` over all local GPUs when there
are several.

Each flow is built at the tiny sizes of the generic flow checks
(`tfp_flows.testing.FLOWS`), compiled with `jit_compile=True` and trained on one
batch of 8 rows: on each device (`tf.config.list_logical_devices()`, placed with
`tf.device`) by `model.train_on_batch`, and under `MirroredStrategy` by
`tfp_flows.keras.distributed.fit_distributed` (Keras 3's own jit-compiled step
fails under `MirroredStrategy` over logical CPU devices; see docs/scaling.md).
The table reports ok / the error, the first step (tracing + XLA compilation) and
the median of the next steps. Written for GPU and TPU machines; on the machine
this library is developed on only the CPU rows have ever run.

    python benchmarks/accelerator_check.py --out docs
    python benchmarks/accelerator_check.py --flows real_nvp maf --devices CPU:0 --out /tmp/x
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import common  # noqa: E402  (sets TF env vars before TF loads)
from tfp_flows import flows  # noqa: E402
from tfp_flows.keras.distributed import fit_distributed  # noqa: E402
from tfp_flows.testing import flows as flow_testing  # noqa: E402

COLUMNS = ["flow", "device", "status", "first step (s)", "step (s)"]


def _model(name):
    model, x, _ = flow_testing.build_model(name, conditional=False)
    model.compile(keras.optimizers.Adam(1e-3), jit_compile=True)
    return model, np.asarray(x)


def _check(name, repeats):
    """(first step seconds, median step seconds) of `name` in the current device scope."""
    model, x = _model(name)
    start = time.perf_counter()
    loss = model.train_on_batch(x)
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        loss = model.train_on_batch(x)
        times.append(time.perf_counter() - start)
    if not np.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {loss}")
    return first, float(np.median(times))


def _check_mirrored(name, strategy, repeats):
    with strategy.scope():
        model, x = _model(name)
    timer = _StepTimes()
    history = fit_distributed(model, np.tile(x, (repeats + 1, 1)), batch_size=len(x),
                              shuffle=False, verbose=0, callbacks=[timer])
    if not np.isfinite(history.history["loss"][-1]):
        raise FloatingPointError(f"non-finite loss {history.history['loss']}")
    return timer.times[0], float(np.median(timer.times[1:]))


class _StepTimes(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times, self._start = [], 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def _row(name, device, fn):
    try:
        first, step = fn()
        return {"flow": name, "device": device, "status": "ok", "first step (s)": first,
                "step (s)": step}
    except Exception as e:  # noqa: BLE001 - the table reports every failure
        message = str(e).strip().splitlines()[0][:120] if str(e).strip() else ""
        return {"flow": name, "device": device,
                "status": f"error: {type(e).__name__}: {message}".replace("|", "/")}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--flows", nargs="+", default=None,
                   help="registered flows to check (default: all)")
    p.add_argument("--devices", nargs="+", default=None,
                   help="device names or suffixes to check, e.g. CPU:0 GPU:1 (default: all)")
    p.add_argument("--repeats", type=int, default=3, help="timed steps after the first")
    p.add_argument("--out", default="docs", help="writes OUT/results/accelerator_check.md")
    args = p.parse_args(argv)
    names = args.flows or flows.available_flows()
    unknown = sorted(set(names) - set(flows.available_flows()))
    if unknown:
        p.error(f"unknown flows {unknown}; available: {', '.join(flows.available_flows())}")
    if args.repeats < 1:
        p.error(f"--repeats must be a positive integer; got {args.repeats}")
    devices = [d.name for d in tf.config.list_logical_devices()
               if d.device_type in ("CPU", "GPU", "TPU")
               and (args.devices is None or any(d.name.endswith(s) for s in args.devices))]
    if not devices:
        p.error(f"no visible device matches {args.devices}")
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    rows = []
    for name in names:
        for device in devices:
            def on_device(device=device, name=name):
                with tf.device(device):
                    return _check(name, args.repeats)
            rows.append(_row(name, device, on_device))
            print(rows[-1], flush=True)
    if len(gpus) > 1:
        strategy = tf.distribute.MirroredStrategy(gpus)  # one per process
        label = f"MirroredStrategy({len(gpus)} GPUs)"
        for name in names:
            rows.append(_row(name, label, lambda n=name: _check_mirrored(n, strategy,
                                                                        args.repeats)))
            print(rows[-1], flush=True)
    command = "python benchmarks/accelerator_check.py " + " ".join(argv or sys.argv[1:])
    common.write_results(
        os.path.join(args.out, "results", "accelerator_check.md"),
        "One jit-compiled training step per flow and device", command, rows, COLUMNS,
        notes="Tiny sizes (`tfp_flows.testing.FLOWS`), batch of 8, Adam, "
              f"`jit_compile=True`; 'step' is the median of {args.repeats} steps after the "
              "first (which traces and compiles). GPU and TPU rows only appear on machines "
              "that have them; none was reachable where this library is developed.")
    return 1 if any(r["status"] != "ok" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
