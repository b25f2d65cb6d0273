"""Shared benchmark harness: run this library and its peer side by side in one process.

Every script prints the machine's measured float32 matmul rate beside its
results, and reports ratios against the peer measured in the same run (the
machines are shared and noisy; absolute seconds are not comparable across runs).
Training, test NLL and parameter counts are the library's (`tfp_flows.keras.train`,
`evaluate`, `count_parameters`; `tfp_flows.evaluation.mean_of_batches` for peers).
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfp_flows.evaluation import markdown_table  # noqa: E402,F401 - re-exported


def matmul_gflops(n=1024, repeats=10):
    """Measured float32 matmul rate of this machine, in GFLOP/s."""
    a = tf.random.normal([n, n])
    f = tf.function(lambda a: tf.matmul(a, a))
    f(a).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        f(a).numpy()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def machine_line():
    return (f"machine: {platform.machine()}, {os.cpu_count()} cores, "
            f"float32 matmul {matmul_gflops():.1f} GFLOP/s, TF {tf.__version__}, "
            f"Keras {keras.__version__}")


def seconds_per_call(fn, *args, warmup=2, repeats=10):
    """Median wall time of `fn(*args)` after `warmup` calls (tracing excluded)."""
    for _ in range(warmup):
        _block(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _block(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _block(out):
    for t in tf.nest.flatten(out):
        if hasattr(t, "numpy"):
            t.numpy()


def write_results(path, title, command, rows, columns, notes=""):
    """Writes a Markdown results file (table + the command that produced it) and a JSON twin."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    text = (f"## {title}\n\nProduced by:\n\n```\n{command}\n```\n\n{machine_line()}\n\n"
            f"{markdown_table(rows, columns)}\n\n{notes}\n")
    with open(path, "w") as f:
        f.write(text)
    with open(os.path.splitext(path)[0] + ".json", "w") as f:
        json.dump({"title": title, "command": command, "rows": rows}, f, indent=1, default=float)
    print(text)
    return text


def base_parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data-dir", default=None,
                   help="directory with the UCI files (MAF layout); tabular benchmarks use "
                        "scikit-learn data when absent")
    p.add_argument("--out", default="docs/results", help="where tables and plots go")
    p.add_argument("--seed", type=int, default=0)
    return p


def import_revision(rev, repo=None, name="tfp_flows_ref"):
    """`tfp_flows` at git revision `rev` (of `repo`, default this checkout), imported as
    `name` beside this checkout's package: `git archive` into a temporary directory, its
    absolute imports and Keras registrations renamed (for in-process A/B timings)."""
    repo = repo or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    root = tempfile.mkdtemp()
    archive = subprocess.run(["git", "-C", repo, "archive", rev, "tfp_flows"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", root], input=archive, check=True)
    package = os.path.join(root, name)
    os.rename(os.path.join(root, "tfp_flows"), package)
    for folder, _, files in os.walk(package):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                with open(path) as f:
                    text = f.read()
                text = re.sub(r"\btfp_flows\b", name, text)  # imports, registrations
                with open(path, "w") as f:
                    f.write(text)
    sys.path.insert(0, root)
    import importlib
    return importlib.import_module(name)
