"""Traces, XLA compiles and wall time of a first `FlowModel.fit` with a partial last batch.

For RealNVP and NSF coupling (5 layers, hidden (64, 64) ReLU; NSF 8 bins on
[-4, 4]) on two moons (2000 training rows, batch 512: three full batches and
one of 464 rows; 500 validation rows), `jit_compile=True`, each worker process
runs `fit(epochs=2, validation_data=...)` and then `predict` on the 2000
training rows, and reports

* traces: how often Keras' train / test / predict step ran in Python (once per
  `tf.function` trace), with the batch shapes they were traced with;
* XLA compiles: HLO modules XLA compiled (one `*.before_optimizations.txt` file
  per compile in an `--xla_dump_to` directory), after the first epoch, after the
  second and after `predict`;
* wall seconds: from the `fit` call to the end of the first epoch (trace, XLA
  compiles, training and validation), the second epoch, and `predict`.

The script compiles the model itself rather than through `tfp_flows.keras.train.fit`:
what it measures is that compiled model (a `FlowModel` subclass counting its
steps' traces). Several code trees are compared in one invocation: each `--code DIR` is put
first on the worker's `sys.path` (e.g. an export of the main branch and this
branch); workers run one at a time in interleaved rounds (flow by flow, code
tree after code tree), and the parent prints the load average before and after
every worker.

    git archive main | tar -x -C /tmp/main_tree
    python benchmarks/compile_count.py --code /tmp/main_tree --label main \\
        --code . --label padded --rounds 2 --out docs
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

FLOWS = {"real_nvp": ("real_nvp", {}),
         "nsf": ("neural_spline", {"num_bins": 8, "bound": 4.0})}
TRAIN_ROWS, VAL_ROWS, BATCH = 2000, 500, 512


def worker(flow, code, dump):
    sys.path.insert(0, os.path.abspath(code))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    import tfp_flows
    from tfp_flows import datasets, flows
    from tfp_flows.keras import FlowModel

    def modules():
        return len(glob.glob(os.path.join(dump, "*.before_optimizations.txt")))

    class Counting(FlowModel):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            object.__setattr__(self, "traced", {"train": [], "test": [], "predict": []})

        def _note(self, kind, data):
            x = keras.utils.unpack_x_y_sample_weight(data)[0]
            x = x["x"] if isinstance(x, dict) else x
            self.traced[kind].append(list(x.shape))

        def train_step(self, data):
            self._note("train", data)
            return super().train_step(data)

        def test_step(self, data):
            self._note("test", data)
            return super().test_step(data)

        def predict_step(self, data):
            self._note("predict", data)
            return super().predict_step(data)

    marks = {}

    class Marks(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            marks[epoch] = (time.perf_counter(), modules())

    split = datasets.load("moons", num_samples=TRAIN_ROWS, seed=0)
    x, x_val = split.train.astype(np.float32), split.validation.astype(np.float32)
    assert len(x) == TRAIN_ROWS and len(x_val) == VAL_ROWS
    name, extra = FLOWS[flow]
    keras.utils.set_random_seed(0)
    model = Counting(flows.build_flow(name, event_size=2, num_layers=5, hidden_units=(64, 64),
                                      **extra))
    model.compile(keras.optimizers.Adam(1e-3), jit_compile=True)
    start_modules = modules()
    start = time.perf_counter()
    history = model.fit(x, batch_size=BATCH, epochs=2, validation_data=(x_val,), verbose=0,
                        callbacks=[Marks()])
    before_predict = time.perf_counter()
    scores = model.predict(x, batch_size=BATCH, verbose=0)
    end = time.perf_counter()
    assert scores.shape == (TRAIN_ROWS,)
    return {
        "tfp_flows": tfp_flows.__file__,
        "traces": {k: len(v) for k, v in model.traced.items()},
        "traced_shapes": model.traced,
        "xla_modules": {"epoch 1": marks[0][1] - start_modules,
                        "epoch 2": marks[1][1] - marks[0][1],
                        "predict": modules() - marks[1][1]},
        "seconds": {"epoch 1": marks[0][0] - start, "epoch 2": marks[1][0] - marks[0][0],
                    "predict": end - before_predict},
        "val_loss": [float(v) for v in history.history["val_loss"]],
    }


def load():
    return [round(v, 2) for v in os.getloadavg()]


def run_worker(flow, code):
    with tempfile.TemporaryDirectory(prefix="xla_dump_") as dump:
        env = dict(os.environ, XLA_FLAGS=f"--xla_dump_to={dump}", PYTHONPATH=code)
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", flow,
                              "--code", code, "--dump", dump], env=env, capture_output=True,
                             text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"worker {flow} at {code} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--code", action="append", default=[])
    parser.add_argument("--label", action="append", default=[])
    parser.add_argument("--flows", nargs="+", default=list(FLOWS), choices=list(FLOWS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=None, help="docs dir: writes results/compile_count.*")
    parser.add_argument("--worker", default=None)
    parser.add_argument("--dump", default=None)
    parser.add_argument("--note", default="", help="a sentence for the results md (e.g. "
                        "which commit each code tree is)")
    parser.add_argument("--from-json", default=None, help="rewrite the tables from a results "
                        "json (no runs); with --out")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.code[0], args.dump)))
        return
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        report(saved["runs"], saved["labels"], saved["flows"], saved["rounds"], args.out,
               saved["command"], saved.get("note", ""))
        return
    codes = [os.path.abspath(c) for c in args.code] or [os.getcwd()]
    labels = args.label or [os.path.basename(c) for c in codes]
    runs = []
    for flow in args.flows:
        for r in range(args.rounds):
            for code, label in zip(codes, labels, strict=True):
                before = load()
                result = run_worker(flow, code)
                result.update(flow=flow, code=label, round=r, load_before=before,
                              load_after=load())
                print(json.dumps({k: result[k] for k in ("flow", "code", "round", "traces",
                                                         "xla_modules", "seconds",
                                                         "load_before", "load_after")}),
                      flush=True)
                runs.append(result)
    command = " ".join(["python", "benchmarks/compile_count.py", *sys.argv[1:]])
    report(runs, labels, args.flows, args.rounds, args.out, command, args.note)


def report(runs, labels, flow_names, rounds, out, command, note=""):
    rows, per_round = [], []
    for flow in flow_names:
        for label in labels:
            mine = [r for r in runs if r["flow"] == flow and r["code"] == label]
            sec = {k: median([r["seconds"][k] for r in mine]) for k in mine[0]["seconds"]}
            rows.append([flow, label, "/".join(str(mine[0]["traces"][k])
                                               for k in ("train", "test", "predict")),
                         "/".join(str(mine[0]["xla_modules"][k]) for k in sec),
                         f"{sec['epoch 1']:.1f}", f"{sec['epoch 2'] + sec['predict']:.1f}",
                         f"{sec['epoch 2']:.2f}", f"{sec['predict']:.1f}"])
    for r in runs:
        per_round.append([r["flow"], r["code"], str(r["round"]),
                          ", ".join(f"{k} {v}" for k, v in r["traced_shapes"].items()),
                          f"{r['seconds']['epoch 1']:.1f}", f"{r['seconds']['epoch 2']:.2f}",
                          f"{r['seconds']['predict']:.1f}", f"{r['load_before'][0]:.2f}",
                          " / ".join(f"{v:.4f}" for v in r["val_loss"])])
    header = ["flow", "code", "traces train/test/predict", "XLA compiles epoch 1/epoch 2/predict",
              "epoch 1 s", "epoch 2 + predict s", "epoch 2 s", "predict s"]
    table = _table(header, rows)
    detail = _table(["flow", "code", "round", "traced batch shapes", "epoch 1 s", "epoch 2 s",
                     "predict s", "load before", "val_loss epoch 1 / 2"], per_round)
    loads = [v for r in runs for v in (r["load_before"][0], r["load_after"][0])]
    print(table)
    print(f"1-minute load average {min(loads)} to {max(loads)}")
    if out:
        path = os.path.join(out, "results", "compile_count")
        with open(path + ".json", "w") as f:
            json.dump({"runs": runs, "labels": labels, "flows": flow_names, "rounds": rounds,
                       "command": command, "note": note}, f, indent=1)
        description = "\n\n".join(__doc__.split("\n\n")[1:3])
        with open(path + ".md", "w") as f:
            f.write("# Compile count: one program per step with padded array batches\n\n"
                    f"Command: `{command}`\n\n{note}\n\n{description}\n\nMedian seconds over "
                    f"{rounds} rounds (one worker process per round, code trees "
                    f"interleaved); 1-minute load average {min(loads)} to {max(loads)} on 2 "
                    "shared cores (other jobs running). Traces and compiles were the same in "
                    f"every round.\n\n{table}\n\nEvery run:\n\n{detail}\n")


def _table(header, rows):
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(r) + " |" for r in rows])


if __name__ == "__main__":
    main()
