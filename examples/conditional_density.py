"""Conditional density estimation p(y | c) with every family, on the same data.

Two conditional toys (`tfp_flows.datasets`):

* `rotated_moons`: y in R^2 is two moons rotated by c * 90 degrees, c ~ U(-1, 1);
* `bimodal_sine`: a scalar y = sin(c) +- 0.6 + noise, c ~ U(-3, 3) (exact
  log p(y | c) known, so the table shows the gap to the truth).

Every model is a registered flow built with `conditional_size=1` and trained
by `tfp_flows.keras.train` on `{"x": y, "conditional_input": c}`; samples are
drawn with `model.sample(n, conditional_input=c)`. Writes a results table
(test NLL and its log-density kind per model) and a PNG of conditional
samples to `--out`.

    python examples/conditional_density.py --out docs/conditional --epochs 40
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import tfp_flows as tff  # noqa: E402
from tfp_flows.evaluation import markdown_table  # noqa: E402

# One ready-made flow per family (and the baselines), small enough for a CPU run.
# Funnels need a target of at least two dimensions (they drop one), so they sit out
# the scalar task.
MOONS = {
    "real_nvp": {"num_layers": 6, "hidden_units": (64, 64)},
    "maf": {"num_layers": 5, "hidden_units": (64, 64)},
    "neural_spline": {"num_layers": 4, "hidden_units": (64, 64)},
    "ferumal": {"num_blocks": 4, "num_inducing": 32},
    "ffjord": {"hidden_units": (64, 64), "trace": "exact"},
    "funnel_nsf": {"num_layers": 4, "hidden_units": (64, 64)},
    "augmented_real_nvp": {"num_augment": 2, "num_layers": 6, "hidden_units": (64, 64),
                           "proposal": "gaussian", "num_samples": 100},
    "lgf_real_nvp": {"num_layers": 4, "hidden_units": (64, 64),
                     "num_importance_samples": 100},
}
SCALAR = {
    "real_nvp": {"num_layers": 4, "hidden_units": (64, 64)},
    "maf": {"num_layers": 4, "hidden_units": (64, 64)},
    "neural_spline": {"num_layers": 2, "hidden_units": (64, 64)},
    "ferumal": {"num_blocks": 2, "num_inducing": 32},
    "ffjord": {"hidden_units": (64, 64), "trace": "exact"},
    "augmented_real_nvp": {"num_augment": 1, "num_layers": 4, "hidden_units": (64, 64),
                           "proposal": "gaussian", "num_samples": 100},
    "lgf_maf": {"num_layers": 3, "hidden_units": (64, 64), "num_importance_samples": 100},
}
OBJECTIVE = {"augmented_real_nvp": "elbo", "lgf_real_nvp": "elbo", "lgf_maf": "elbo"}
CONDITIONS = {"rotated_moons": [-0.8, 0.0, 0.8], "bimodal_sine": np.linspace(-3, 3, 200)}


def fit_one(name, kwargs, split, args):
    from tfp_flows.keras import FlowModel, train

    model = FlowModel.from_flow(name, objective=OBJECTIVE.get(name), event_size=split.dim,
                                conditional_size=1, seed=args.seed, **kwargs)
    result = train.fit(model, split.train, conditional_input=split.conditions["train"],
                       validation_data=split.validation,
                       validation_conditional_input=split.conditions["validation"],
                       batch_size=args.batch_size, epochs=args.epochs,
                       learning_rate=args.learning_rate, seed=args.seed, verbose=0)
    nll, kind = train.evaluate(model, split.test, conditional_input=split.conditions["test"],
                               num_samples=100, seed=args.seed)
    return model, result, nll, kind


def run_task(task, models, args):
    split = tff.datasets.load(task, num_samples=args.num_samples, seed=args.seed)
    rows, fitted = [], {}
    for name, kwargs in models.items():
        start = time.time()
        model, result, nll, kind = fit_one(name, kwargs, split, args)
        fitted[name] = model
        rows.append({"task": task, "flow": name, "test NLL (nats)": nll, "log-density kind": kind,
                     "params": tff.keras.train.count_parameters(model),
                     "compile s": result.compile_seconds, "train s": result.train_seconds,
                     "wall s": time.time() - start})
        print(f"{task:14s} {name:20s} NLL {nll:8.4f} ({kind}) in {time.time() - start:.0f} s",
              flush=True)
    if task == "bimodal_sine":
        truth = tff.datasets.conditional.conditional_log_prob(
            task, split.test, split.conditions["test"])
        rows.append({"task": task, "flow": "(true density)", "test NLL (nats)":
                     float(-truth.mean()), "log-density kind": "exact"})
    return split, rows, fitted


def plot(results, path, seed):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    moons_split, _, moons = results["rotated_moons"]
    sine_split, _, sine = results["bimodal_sine"]
    conds = CONDITIONS["rotated_moons"]
    names = ["data", *moons]
    fig, axes = plt.subplots(len(names), len(conds) + 1,
                             figsize=(2.4 * (len(conds) + 1), 2.2 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        for j, c in enumerate(conds):
            ax = axes[i][j]
            if name == "data":
                s = tff.datasets.rotated_moons(800, seed=seed + j, condition=c)[0]
            else:
                s = np.asarray(moons[name].sample(
                    800, conditional_input=np.array([c], "float32"), seed=(seed, 10 * i + j)))
            ax.scatter(s[:, 0], s[:, 1], s=1, alpha=0.5)
            ax.set_xlim(-3.5, 3.5)
            ax.set_ylim(-3.5, 3.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"c = {c:+.1f}", fontsize=9)
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
        ax = axes[i][-1]
        c = CONDITIONS["bimodal_sine"].astype("float32")[:, None]
        if name == "data":
            y = sine_split.test
            ax.scatter(sine_split.conditions["test"][:, 0], y[:, 0], s=2, alpha=0.6, color="k")
            ax.set_xlim(-3.2, 3.2)
            ax.set_ylim(-2.5, 2.5)
        elif name in sine:
            y = np.asarray(sine[name].sample(len(c), conditional_input=c, seed=(seed, 99)))
            ax.scatter(c[:, 0], y[:, 0], s=2, alpha=0.6, color="C1")
            ax.set_xlim(-3.2, 3.2)
            ax.set_ylim(-2.5, 2.5)
        else:
            label = ("needs D >= 2" if name.startswith("funnel")
                     else "scalar run: another\nflow of the family")
            ax.text(0.5, 0.5, label, ha="center", va="center", fontsize=8,
                    transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        if i == 0:
            ax.set_title("scalar: y | c", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    del moons_split


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default="conditional_output")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--num-samples", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="two models per task, two epochs (a smoke test)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    tasks = {"rotated_moons": MOONS, "bimodal_sine": SCALAR}
    if args.quick:
        tasks = {k: dict(list(v.items())[:2]) for k, v in tasks.items()}
        args.epochs, args.num_samples = 2, 400
    results = {task: run_task(task, models, args) for task, models in tasks.items()}
    rows = [r for _, task_rows, _ in results.values() for r in task_rows]
    columns = ["task", "flow", "test NLL (nats)", "log-density kind", "params", "compile s",
               "train s", "wall s"]
    table = markdown_table(rows, columns)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(f"Command: `python examples/conditional_density.py --out {args.out} --epochs "
                f"{args.epochs}` ({args.num_samples} training pairs, batch {args.batch_size}, "
                f"seed {args.seed}).\n\n{table}\n")
    plot(results, os.path.join(args.out, "conditional_samples.png"), args.seed)
    print("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
