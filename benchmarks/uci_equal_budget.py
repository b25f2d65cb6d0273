"""Every family on a full UCI set (POWER) at one equal step budget, beside the papers' tables.

Ferumal flow, RealNVP, Glow, MAF, NSF, F-NSF, F-Glow, F-MLP, LGF-MAF and
FFJORD, each sized to about `--match-params` trainable parameters (the one
width of each model, for the Ferumal flow its number of inducing points, is
the one whose count is closest; `benchmarks.funnels_common.match_width`), are
trained by the library's pipeline (`benchmarks.ferumal_common.train_result`,
i.e. `tfp_flows.keras.train.fit`) for the same `--steps` optimiser steps of
batch `--batch-size` (Adam, cosine decay; lr 5e-3 for the Ferumal flow as in
the other Ferumal benchmarks, 1e-3 for the rest), XLA-compiled. The
validation NLL (LGF-MAF: negative ELBO; FFJORD: Hutchinson trace) is
measured every `--eval-every` steps on `--num-val` validation rows and the
best weights are restored; the curves go to `<out>/<name>_curves.png`.

Test log-likelihood LL = -NLL (nats, higher is better) on the whole test
split for the exact flows; LGF-MAF by importance sampling with S =
`--test-samples` (the paper's 1000) on `--num-test-is` test rows, FFJORD with
the exact trace on `--num-test-ffjord` rows (both subsets are stated in the
table). FFJORD trains for at most `--ffjord-seconds` of wall time (it does
not fit the step budget of the others on a CPU; its steps are in the table).
After every finished model the table (Markdown + JSON) and the plot are
rewritten, so a killed run keeps what it finished. With `--append` the rows
already in `<out>/<name>_equal_budget.json` are kept (a model run again
replaces its earlier row) and every row records the command that produced
it, so a sweep can be split into several invocations; the budget in the
notes is this invocation's, the per-row `steps` and `epochs` are each row's.

    python benchmarks/uci_equal_budget.py --data-dir DATA --dataset power --steps 1000
"""
# ruff: noqa: I001  (benchmarks.common must set the TF environment before TF is imported)

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common, ferumal_common, funnels_common  # noqa: E402
from benchmarks.ffjord_density import Budget  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tfp_flows import datasets  # noqa: E402
from tfp_flows.keras import RNODE  # noqa: E402
from tfp_flows.keras.train import count_parameters, evaluate  # noqa: E402

# Published test log-likelihoods on POWER (nats, LL = -NLL): (value, source, paper params).
# The Ferumal paper's Table 2 and the FFJORD paper report NLL; converted here to LL. Paper
# parameter counts: the Ferumal paper's Table 4 (the other papers do not state them for POWER).
PAPER_LL = {
    "ferumal": (0.23, "Ferumal T2 (NLL -0.23)", "16K"),
    "real_nvp": (0.17, "Ferumal T2 (NLL -0.17)", "228K"),
    "glow": (0.17, "Ferumal T2 (NLL -0.17); Funnels T1 0.38", "228K"),
    "maf": (0.24, "Ferumal T2 (NLL -0.24); LGF T1 0.19", None),
    "nsf": (0.63, "Funnels T1", None),
    "f_nsf": (0.62, "Funnels T1", None),
    "f_glow": (0.38, "Funnels T1", None),
    "f_mlp": (0.36, "Funnels T1", None),
    "lgf_maf": (0.48, "LGF T1", None),
    "ffjord": (0.46, "FFJORD T2 (NLL -0.46)", None),
}
FFJORD_KWARGS = dict(trace="hutchinson", solver="dopri5", rtol=1e-5, atol=1e-5)


def specs(dim):
    """`{key: (label, flow, kwargs for width w, lr, objective)}`."""
    return {
        "ferumal": ("Ferumal (5 blocks)", "ferumal",
                    lambda w: dict(event_size=dim, num_blocks=5, num_inducing=w), 5e-3, None),
        "real_nvp": ("RealNVP (10 layers)", "real_nvp",
                     lambda w: dict(event_size=dim, num_layers=10, hidden_units=(w, w)),
                     1e-3, None),
        "glow": ("Glow (10 layers)", "glow",
                 lambda w: dict(event_size=dim, num_layers=10, hidden_units=(w, w)), 1e-3, None),
        "maf": ("MAF (5 layers)", "maf",
                lambda w: dict(event_size=dim, num_layers=5, hidden_units=(w, w)), 1e-3, None),
        "nsf": ("NSF (4 layers)", "neural_spline",
                lambda w: dict(event_size=dim, num_layers=4, num_bins=8, hidden_units=(w, w),
                               lu_linear=True), 1e-3, None),
        "f_nsf": ("F-NSF (4 layers)", "funnel_nsf",
                  lambda w: dict(event_size=dim, num_layers=4, num_bins=8, hidden_units=(w, w),
                                 decoder="flow", decoder_hidden_units=(max(8, w // 2),)),
                  1e-3, None),
        "f_glow": ("F-Glow (10 layers)", "funnel_glow",
                   lambda w: dict(event_size=dim, num_layers=10, hidden_units=(w, w),
                                  decoder="flow", decoder_hidden_units=(max(8, w // 2),)),
                   1e-3, None),
        "f_mlp": ("F-MLP", "funnel_mlp",
                  lambda w: dict(event_size=dim, hidden_units=(w, w)), 1e-3, None),
        "lgf_maf": ("LGF-MAF (5 layers)", "lgf_maf",
                    lambda w: dict(event_size=dim, num_layers=5, index_size=min(dim, 10),
                                   hidden_units=(w, w), st_hidden_units=(10, 10),
                                   prior_hidden_units=(max(8, w // 2),) * 2,
                                   posterior_hidden_units=(max(8, w // 2),) * 2),
                    1e-3, "elbo"),
        "ffjord": ("FFJORD (1 block)", "ffjord",
                   lambda w: dict(event_size=dim, hidden_units=(w, w), **FFJORD_KWARGS),
                   1e-3, "rnode"),
    }


def _subset(x, n, seed):
    if n is None or n >= len(x):
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), n, replace=False))]


def main(argv=None):
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--dataset", default="power", choices=["power", "gas", "hepmass",
                                                          "miniboone", "bsds300"])
    p.add_argument("--models", nargs="+", default=list(PAPER_LL), choices=list(PAPER_LL))
    p.add_argument("--match-params", type=int, default=16000)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--num-val", type=int, default=10000)
    p.add_argument("--num-test-is", type=int, default=1000)
    p.add_argument("--num-test-ffjord", type=int, default=5000)
    p.add_argument("--test-samples", type=int, default=1000)
    p.add_argument("--ffjord-seconds", type=float, default=600.0)
    p.add_argument("--append", action="store_true",
                   help="keep the rows already in <out>/<dataset>_equal_budget.json (a model "
                        "run again replaces its earlier row)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    if args.data_dir is None:
        p.error(f"--dataset {args.dataset} needs --data-dir (the MAF data/ folder).")
    if args.steps % args.eval_every:
        p.error(f"--steps ({args.steps}) must be a multiple of --eval-every "
                f"({args.eval_every}).")
    split = datasets.load(args.dataset, data_dir=args.data_dir)
    x_val = _subset(split.validation, args.num_val, 1)
    table = specs(split.dim)
    command = "python benchmarks/uci_equal_budget.py " + " ".join(argv)
    rows = _previous_rows(args, split) if args.append else []
    rows = [r for r in rows if r.get("key") not in args.models]
    curves = {r["model"]: [tuple(point) for point in r["val curve"]] for r in rows}
    for key in args.models:
        label, flow, kwargs_for, lr, objective = table[key]
        widths = range(4, 1001) if key == "ferumal" else range(2, 513)
        width, kwargs, _ = funnels_common.match_width(flow, kwargs_for, args.match_params,
                                                      widths)
        is_ffjord = key == "ffjord"
        if is_ffjord:
            objective = RNODE(kinetic_weight=0.01, jacobian_weight=0.01)
        result = ferumal_common.train_result(
            flow, kwargs, split.train, x_val, args.steps, args.batch_size, lr,
            patience=args.steps, seed=args.seed, jit_compile=True,
            steps_per_execution=args.eval_every, validation_batch_size=2000,
            eval_every=args.eval_every, objective=objective,
            callbacks=[Budget(args.ffjord_seconds)] if is_ffjord else ())
        model = result.model
        if key == "lgf_maf":
            test = _subset(split.test, args.num_test_is, 2)
            nll = evaluate(model, test, num_samples=args.test_samples, seed=1, batch_size=50,
                           chunk_size=min(args.test_samples, 100))
        else:
            if is_ffjord:
                model.with_trace("exact")
            test = _subset(split.test, args.num_test_ffjord, 2) if is_ffjord else split.test
            nll = evaluate(model, test, batch_size=2000)
        curves[label] = [(args.eval_every * (i + 1), v)
                         for i, v in enumerate(result.history.get("val_loss", []))]
        paper, source, paper_params = PAPER_LL[key]
        rows.append({"key": key, "model": label, "width": width, "params": count_parameters(model),
                     "paper params": paper_params or "n/a",
                     "test LL": -nll.nll, "kind": nll.kind, "test rows": len(test),
                     "paper LL": paper, "paper": source, "val rows": len(x_val),
                     "eval every": args.eval_every, "steps": result.steps,
                     "epochs": result.steps * args.batch_size / len(split.train),
                     "best at step": (result.best_epoch or 0) * args.eval_every,
                     "train s": result.seconds, "first chunk s": result.compile_seconds,
                     "chunk s": result.median_epoch_seconds, "command": command,
                     "val curve": curves[label]})
        print({k: v for k, v in rows[-1].items() if k != "val curve"}, flush=True)
        _write(args, split, rows, curves)
    return rows


def _flag_values(command):
    words = command.split()
    return {w: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--")}


def _previous_rows(args, split):
    path = os.path.join(args.out, f"{args.dataset}_equal_budget.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        saved = json.load(f)
    for row in saved["rows"]:
        row.setdefault("command", saved.get("command", ""))
        given = _flag_values(row["command"])
        row.setdefault("val rows", min(int(given.get("--num-val", 10000)),
                                       len(split.validation)))
        row.setdefault("eval every", int(given.get("--eval-every", 100)))
        row.setdefault("key", next((k for k, v in specs(0).items() if v[0] == row["model"]),
                                   None))
    return saved["rows"]


def _write(args, split, rows, curves):
    name = args.dataset
    os.makedirs(args.out, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, curve in curves.items():
        if curve:
            steps, values = zip(*curve, strict=True)
            ax.plot(steps, values, marker=".", label=label)
    ax.set_xlabel(f"optimiser step (batch {args.batch_size})")
    ax.set_ylabel("validation NLL (nats; rows: `val rows` in the table)")
    ax.set_title(f"{name.upper()} (reconstructed split): validation curves")
    lows = [v for c in curves.values() for _, v in c if np.isfinite(v)]
    if lows:
        ax.set_ylim(min(lows) - 0.2, min(lows) + 3.0)
    ax.legend(fontsize=7)
    fig.tight_layout()
    img = os.path.join(args.out, f"{name}_curves.png")
    fig.savefig(img, dpi=100)
    plt.close(fig)
    epochs = args.steps * args.batch_size / len(split.train)
    commands = list(dict.fromkeys(r["command"] for r in rows))
    notes = (f"{name.upper()} (reconstructed split): train {len(split.train):,} / validation "
             f"{len(split.validation):,} / test {len(split.test):,} rows. This invocation: "
             f"{args.steps} steps of batch {args.batch_size} ({epochs:.3f} epochs; each row's "
             "own `steps` and `epochs` are in the table), widths "
             f"matched to about {args.match_params} parameters, Adam with cosine decay, "
             "XLA, seed "
             f"{args.seed}; validation every `eval every` steps on `val rows` seeded "
             "validation rows, best weights restored. FFJORD: at most "
             f"{args.ffjord_seconds:.0f} s of training (steps as given). LGF-MAF: test LL by "
             f"importance sampling, S = {args.test_samples}. `train s` is wall time on a "
             "shared 2-core CPU (nice 15), tracing and XLA compilation included. Paper LLs "
             "are at the papers' own (much larger) budgets and sizes; never compare them as "
             f"equal-budget numbers. Curves: `{os.path.basename(img)}`.")
    common.write_results(os.path.join(args.out, f"{name}_equal_budget.md"),
                         f"{name.upper()} (reconstructed split): every family at an equal "
                         "step budget", "\n".join(commands),
                         rows, ["model", "width", "params", "test LL", "kind", "test rows",
                                "paper LL", "paper", "steps", "epochs", "best at step",
                                "eval every", "val rows", "train s"], notes)
    with open(os.path.join(args.out, f"{name}_equal_budget.json"), "w") as f:
        json.dump({"command": commands[-1] if commands else "", "commands": commands,
                   "rows": rows}, f, indent=1, default=float)


if __name__ == "__main__":
    main()
