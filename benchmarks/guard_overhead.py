"""Per-step cost of guarded training (`tfp_flows.keras.GuardNonFinite`) in `model.fit`.

One model per flow is compiled once (`jit_compile=True`) and trained by
`model.fit` on 8192 two-moons points (batch 256, 32 steps per epoch) with
each callback setting in turn, interleaved over `--repeats` rounds so that
load changes hit every setting alike: no callback, Keras' `TerminateOnNaN`
(reads the loss back every step), the guard copying the state every step
(`every=1`, the default) and every 10 steps. Reported, as medians over the
rounds of epochs 2-4 of each `fit` (the first epoch of every `fit` is left
out): the process CPU milliseconds per step (all threads; less sensitive than
wall time to other processes on a shared machine), wall milliseconds per step,
and, for the guard, the wall time spent inside its own hooks per step (the
state copy and the loss read-back), which is what it adds to a step.

    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \
        python benchmarks/guard_overhead.py --repeats 7

Writes `<out>/guard_overhead.md` and `.json`.
"""
# ruff: noqa: I001  (benchmarks.common must set the TF environment before TF is imported)

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfp_flows import datasets  # noqa: E402
from tfp_flows.keras import FlowModel, GuardNonFinite  # noqa: E402

FLOWS = {
    "real_nvp (2 layers, 8 units)": ("real_nvp", {"num_layers": 2, "hidden_units": (8,)}),
    "real_nvp (4 layers, 64-64)": ("real_nvp", {"num_layers": 4, "hidden_units": (64, 64)}),
    "neural_spline (4 layers, 64-64)": ("neural_spline", {"num_layers": 4}),
}
SETTINGS = {
    "none": lambda: [],
    "TerminateOnNaN": lambda: [keras.callbacks.TerminateOnNaN()],
    "guard every=1": lambda: [_TimedGuard()],
    "guard every=10": lambda: [_TimedGuard(every=10)],
}


class _Times(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times, self.cpu = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._cpu = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)
        self.cpu.append(time.process_time() - self._cpu)


class _TimedGuard(GuardNonFinite):
    """The guard, timing its own per-step hooks."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hook_seconds, self.steps = 0.0, 0

    def on_train_batch_begin(self, batch, logs=None):
        start = time.perf_counter()
        super().on_train_batch_begin(batch, logs)
        self.hook_seconds += time.perf_counter() - start

    def on_train_batch_end(self, batch, logs=None):
        start = time.perf_counter()
        super().on_train_batch_end(batch, logs)
        self.hook_seconds += time.perf_counter() - start
        self.steps += 1


def run(flows, repeats, epochs=4, batch_size=256):
    x = datasets.two_moons(16384, seed=0).astype("float32")
    steps = len(x) // batch_size
    rows = []
    for label in flows:
        name, kwargs = FLOWS[label]
        keras.utils.set_random_seed(0)
        model = FlowModel.from_flow(name, event_size=2, **kwargs)
        model.initialize_from_data(x[:1024])
        model.compile(keras.optimizers.Adam(1e-4), jit_compile=True)
        model.fit(x, batch_size=batch_size, epochs=1, verbose=0)  # compile
        wall, cpu, hooks = ({s: [] for s in SETTINGS} for _ in range(3))
        for _ in range(repeats):
            for setting, make in SETTINGS.items():
                timer, callbacks = _Times(), make()
                model.fit(x, batch_size=batch_size, epochs=epochs, verbose=0,
                          callbacks=callbacks + [timer])
                wall[setting].append(1e3 * np.median(timer.times[1:]) / steps)
                cpu[setting].append(1e3 * np.median(timer.cpu[1:]) / steps)
                if callbacks and isinstance(callbacks[0], _TimedGuard):
                    hooks[setting].append(1e3 * callbacks[0].hook_seconds / callbacks[0].steps)
        base = float(np.median(cpu["none"]))
        for setting in SETTINGS:
            ms = float(np.median(cpu[setting]))
            rows.append({"flow": label, "callbacks": setting, "CPU ms/step": round(ms, 3),
                         "CPU overhead %": round(100 * (ms - base) / base, 1),
                         "wall ms/step": round(float(np.median(wall[setting])), 3),
                         "guard hooks ms/step": round(float(np.median(hooks[setting])), 3)
                         if hooks[setting] else "",
                         "weights + optimizer variables": len(model.weights)
                         + len(model.optimizer.variables)})
        print(rows[-4:], flush=True)
    return rows


def main(argv=None):
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--flows", nargs="+", default=list(FLOWS), choices=list(FLOWS))
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    start = time.perf_counter()
    rows = run(args.flows, args.repeats)
    load = os.getloadavg()
    common.write_results(
        os.path.join(args.out, "guard_overhead.md"), "Guarded training: cost per step",
        "python benchmarks/guard_overhead.py " + " ".join(argv or sys.argv[1:]), rows,
        ["flow", "callbacks", "CPU ms/step", "CPU overhead %", "wall ms/step",
         "guard hooks ms/step", "weights + optimizer variables"],
        f"Median over {args.repeats} interleaved rounds of the median epoch (epochs 2-4, 64 "
        f"steps of batch 256, jit_compile=True). {time.perf_counter() - start:.0f} s; load "
        f"average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} (2 shared cores: wall times, and CPU "
        "differences of a few per cent, are noise).")


if __name__ == "__main__":
    main()
