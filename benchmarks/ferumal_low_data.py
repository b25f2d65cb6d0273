"""Low-data regime (paper, Table 3): Ferumal flow vs RealNVP, Glow, MAF, NSF and FFJORD.

At most 500 training examples (`tfp_flows.datasets.subsample`, one seeded
subset per `--subset-seeds` entry); test split untouched (`--num-test` rows of
it, default all). Without `--data-dir` the data sets are scikit-learn's digits
(D = 64), breast cancer (D = 30) and wine (D = 13); breast cancer and wine
have fewer than 500 training rows, so all of them are used. With `--data-dir`
the UCI sets in the MAF layout are used instead (`--datasets power gas
hepmass miniboone bsds300`).

Every model: Adam with cosine decay, batch 100, early stopping on the
validation NLL (patience 20 epochs, best restored), validation on at most
`--num-val` rows of the validation split. The Ferumal flow (4 blocks = 8
couplings) shares its inducing points across layers, as the paper does in this
setting; RealNVP and Glow have 8 couplings, MAF 5 layers, NSF 4. With
`--match-params N` every model's width (the Ferumal flow: its number of
inducing points) is the one whose parameter count is closest to N; otherwise
the networks are (64, 64) and the Ferumal flow has `--num-inducing` points.
FFJORD (`--models ... ffjord`) trains with a Hutchinson trace, DOPRI5
rtol = atol = 1e-5 and RNODE weights 0.01 under XLA, at most
`--ffjord-seconds` of wall time per subset, and is evaluated with the exact
trace on `--ffjord-num-test` test rows. The table and its JSON twin are
rewritten after every finished run.

    python benchmarks/ferumal_low_data.py --steps 1500
    python benchmarks/ferumal_low_data.py --data-dir DATA --datasets power \
        --subset-seeds 0,1,2 --match-params 8000 --models ferumal real_nvp glow maf nsf ffjord
"""
# ruff: noqa: I001  (benchmarks.common must set the TF environment before TF is imported)

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common, ferumal_common, funnels_common  # noqa: E402
from benchmarks.ffjord_density import Budget  # noqa: E402

import numpy as np  # noqa: E402

from tfp_flows import datasets  # noqa: E402
from tfp_flows.keras import RNODE  # noqa: E402
from tfp_flows.keras.train import count_parameters, evaluate  # noqa: E402

SKLEARN = {"digits": datasets.load_digits, "breast_cancer": datasets.load_breast_cancer,
           "wine": datasets.load_wine}
UCI = {"power": datasets.load_power, "gas": datasets.load_gas, "hepmass": datasets.load_hepmass,
       "miniboone": datasets.load_miniboone, "bsds300": datasets.load_bsds300}
PAPER_TABLE3 = {"miniboone": (27.75, "58K"), "hepmass": (27.90, "41K"), "gas": (-0.22, "11K"),
                "power": (2.91, "8K"), "bsds300": (-121.22, "85K")}
PAPER_FFJORD_TABLE3 = {"miniboone": (21.17, "?"), "power": (11.33, "43K")}
LABELS = {"ferumal": "ferumal (shared points)", "real_nvp": "real_nvp", "glow": "glow",
          "maf": "maf", "nsf": "nsf", "ffjord": "ffjord"}
FFJORD_KWARGS = dict(trace="hutchinson", solver="dopri5", rtol=1e-5, atol=1e-5)


def _specs(dim, num_inducing):
    """`{key: (flow, kwargs for width w, lr, default width)}`."""
    return {
        "ferumal": ("ferumal", lambda w: dict(event_size=dim, num_blocks=4, num_inducing=w,
                                              inducing="shared"), 5e-3, num_inducing),
        "real_nvp": ("real_nvp", lambda w: dict(event_size=dim, num_layers=8,
                                                hidden_units=(w, w)), 1e-3, 64),
        "glow": ("glow", lambda w: dict(event_size=dim, num_layers=8, hidden_units=(w, w)),
                 1e-3, 64),
        "maf": ("maf", lambda w: dict(event_size=dim, num_layers=5, hidden_units=(w, w)),
                1e-3, 64),
        "nsf": ("neural_spline", lambda w: dict(event_size=dim, num_layers=4,
                                                hidden_units=(w, w)), 1e-3, 64),
        "ffjord": ("ffjord", lambda w: dict(event_size=dim, hidden_units=(w, w),
                                            **FFJORD_KWARGS), 1e-3, 64),
    }


def models(dim, num_inducing, keys=("ferumal", "real_nvp", "glow"), match_params=None):
    """`{label: (flow, kwargs, lr)}`; with `match_params` widths matched to that count."""
    out = {}
    for key in keys:
        flow, kwargs_for, lr, width = _specs(dim, num_inducing)[key]
        if match_params:
            widths = range(4, 1001) if key == "ferumal" else range(4, 513)
            width, kwargs, _ = funnels_common.match_width(flow, kwargs_for, match_params, widths)
        else:
            kwargs = kwargs_for(width)
        out[LABELS[key]] = (flow, kwargs, lr)
    return out


def load(name, data_dir):
    if name in SKLEARN:
        return SKLEARN[name]()
    if data_dir is None:
        raise SystemExit(f"Data set {name!r} is a UCI set: pass --data-dir (the MAF data/ "
                         "folder). It is not on this machine; use the scikit-learn sets.")
    return UCI[name](data_dir)


def _rows_of(rng, x, n):
    return x if n is None or n >= len(x) else x[np.sort(rng.choice(len(x), n, replace=False))]


def _summary(runs):
    """One row per (data, model): mean and standard deviation over subsets."""
    rows = []
    for key in dict.fromkeys((r["data"], r["model"]) for r in runs):
        mine = [r for r in runs if (r["data"], r["model"]) == key]
        nll = [r["test NLL"] for r in mine]
        rows.append({"data": key[0], "model": key[1], "subsets": len(mine),
                     "test NLL": float(np.mean(nll)),
                     "sd (subsets)": float(np.std(nll, ddof=1)) if len(nll) > 1 else float("nan"),
                     "per subset": " / ".join(f"{v:.2f}" for v in nll),
                     "train NLL": float(np.nanmean([r["train NLL"] for r in mine]))
                     if any(np.isfinite(r["train NLL"]) for r in mine) else float("nan"),
                     "params": mine[0]["params"],
                     "epochs": " / ".join(str(r["epochs"]) for r in mine),
                     "train s": float(np.sum([r["train s"] for r in mine])),
                     "test rows": mine[0]["test rows"]})
    return rows


def main(argv=None):
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=list(SKLEARN))
    p.add_argument("--models", nargs="+", default=["ferumal", "real_nvp", "glow"],
                   choices=list(LABELS))
    p.add_argument("--num-train", type=int, default=500)
    p.add_argument("--num-inducing", type=int, default=50)
    p.add_argument("--match-params", type=int, default=None,
                   help="size every model to about this many trainable parameters")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--subset-seeds", default=None,
                   help="comma-separated seeds of the training subsets (default: --seed)")
    p.add_argument("--num-val", type=int, default=None,
                   help="validation rows used for early stopping (default all)")
    p.add_argument("--num-test", type=int, default=None, help="test rows (default all)")
    p.add_argument("--ffjord-seconds", type=float, default=600.0,
                   help="FFJORD training wall-time budget per subset")
    p.add_argument("--ffjord-num-test", type=int, default=10000)
    p.add_argument("--no-train-nll", action="store_true",
                   help="skip the training-set NLL (saves one traced evaluation per run)")
    p.add_argument("--append", action="store_true",
                   help="add to the runs already in <out>/ferumal_low_data_runs.json (a "
                        "rerun of the same data, model and subset replaces the earlier run; "
                        "the table summarises all of them; its command line is this run's)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    subset_seeds = ([int(s) for s in args.subset_seeds.split(",")] if args.subset_seeds
                    else [args.seed])
    runs = []
    previous = os.path.join(args.out, "ferumal_low_data_runs.json")
    if args.append and os.path.exists(previous):
        with open(previous) as f:
            runs = json.load(f)
    for name in args.datasets:
        full = load(name, args.data_dir)
        rng = np.random.default_rng(12345)
        x_val = _rows_of(rng, full.validation, args.num_val)
        x_test = _rows_of(rng, full.test, args.num_test)
        x_test_ffjord = x_test[:args.ffjord_num_test]
        specs = models(full.dim, args.num_inducing, args.models, args.match_params)
        n = min(args.num_train, len(full.train))
        for subset in subset_seeds:
            split = datasets.subsample(full, n, seed=subset)
            for label, (flow, kwargs, lr) in specs.items():
                is_ffjord = flow == "ffjord"
                result = ferumal_common.train_result(
                    flow, kwargs, split.train, x_val, args.steps, 100, lr, patience=20,
                    seed=args.seed, jit_compile=is_ffjord,
                    objective=RNODE(kinetic_weight=0.01, jacobian_weight=0.01)
                    if is_ffjord else None,
                    callbacks=[Budget(args.ffjord_seconds)] if is_ffjord else ())
                model = result.model
                test = x_test_ffjord if is_ffjord else x_test
                if is_ffjord:
                    model.with_trace("exact")
                row = {"data": f"{name} (D={split.dim}, n={n})", "model": label,
                       "subset": subset,
                       "test NLL": evaluate(model, test, batch_size=1000).nll,
                       "train NLL": float("nan") if args.no_train_nll else
                       evaluate(model, split.train).nll,
                       "params": count_parameters(model), "epochs": result.epochs_run,
                       "best epoch": result.best_epoch, "steps": result.steps,
                       "train s": result.seconds, "first epoch s": result.compile_seconds,
                       "epoch s": result.median_epoch_seconds, "test rows": len(test),
                       "val curve": result.history.get("val_loss", [])}
                # A rerun of the same (data, model, subset) replaces the earlier one.
                runs = [r for r in runs if (r["data"], r["model"], r["subset"])
                        != (row["data"], row["model"], row["subset"])] + [row]
                print({k: v for k, v in row.items() if k != "val curve"}, flush=True)
                _write(args, argv, runs, subset_seeds, len(x_val))
    return runs


def plot_curves(runs, path):
    """Validation NLL per epoch of every run (one panel per training subset), to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    subsets = sorted({r["subset"] for r in runs})
    names = list(dict.fromkeys(r["model"] for r in runs))
    colour = {m: f"C{i}" for i, m in enumerate(names)}  # one colour per model in every panel
    fig, axes = plt.subplots(1, len(subsets), figsize=(4.2 * len(subsets), 3.4), squeeze=False)
    for ax, subset in zip(axes[0], subsets, strict=True):
        lows = []
        for r in runs:
            if r["subset"] == subset and r["val curve"]:
                ax.plot(np.arange(1, len(r["val curve"]) + 1), r["val curve"], label=r["model"],
                        color=colour[r["model"]])
                lows.append(min(r["val curve"]))
        if lows:
            ax.set_ylim(min(lows) - 0.3, min(lows) + 6.0)
        ax.set_title(f"training subset {subset}", fontsize=9)
        ax.set_xlabel("epoch (5 steps of batch 100)")
        ax.set_ylabel("validation NLL (nats)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write(args, argv, runs, subset_seeds, num_val):
    subset_seeds = sorted({r["subset"] for r in runs} | set(subset_seeds))
    notes = (f"Up to {args.steps} steps of batch 100 (early stopping, patience 20 epochs of "
             f"5 steps, best validation epoch restored; validation on {num_val} rows); "
             f"training subsets of {args.num_train} rows with seeds {subset_seeds}; mean and "
             "sample standard deviation over subsets. "
             + (f"Widths matched to about {args.match_params} parameters. "
                if args.match_params else
                f"Ferumal N = {args.num_inducing} shared inducing points; networks (64, 64). ")
             + "Ferumal lr 5e-3, the others 1e-3. FFJORD: Hutchinson trace in training, "
             f"exact trace at test, at most {args.ffjord_seconds:.0f} s of training per "
             "subset. Paper Table 3 (Ferumal flow, 500 examples): " + ", ".join(
                 f"{k.upper()} {v[0]} ({v[1]})" for k, v in PAPER_TABLE3.items())
             + "; FFJORD POWER 11.33 (43K).")
    columns = ["data", "model", "subsets", "test NLL", "sd (subsets)", "per subset",
               "train NLL", "params", "epochs", "train s", "test rows"]
    common.write_results(os.path.join(args.out, "ferumal_low_data.md"),
                         "Low-data regime: Ferumal flow vs baselines",
                         "python benchmarks/ferumal_low_data.py " + " ".join(argv),
                         _summary(runs), columns, notes)
    plot_curves(runs, os.path.join(args.out, "ferumal_low_data_curves.png"))
    path = os.path.join(args.out, "ferumal_low_data_runs.json")
    with open(path, "w") as f:
        json.dump(runs, f, indent=1, default=float)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
