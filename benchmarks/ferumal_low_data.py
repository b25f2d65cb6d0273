"""Low-data regime (paper, Table 3): Ferumal flow vs RealNVP and Glow-style.

At most 500 training examples (`tfp_flows.datasets.subsample`); validation and
test splits untouched. The paper's UCI data is absent on this machine, so the
default data sets are scikit-learn's digits (D = 64), breast cancer (D = 30)
and wine (D = 13); breast cancer and wine have fewer than 500 training rows, so
all of them are used. With `--data-dir` the UCI sets in the MAF layout are used
instead (`--datasets power gas hepmass miniboone bsds300`).

Every model: 4 blocks = 8 couplings at equal depth, Adam with cosine decay,
batch 100, early stopping on the validation NLL (patience 20 epochs, best
restored). The Ferumal flow shares its inducing points across layers, as the
paper does in this setting. FFJORD, the paper's baseline here, is written
concurrently by another engineer and is not run.

    python benchmarks/ferumal_low_data.py --steps 1500
"""
# ruff: noqa: I001  (benchmarks.common must set the TF environment before TF is imported)

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common, ferumal_common  # noqa: E402

import numpy as np  # noqa: E402

from tfp_flows import datasets  # noqa: E402
from tfp_flows.keras.train import count_parameters, evaluate  # noqa: E402

SKLEARN = {"digits": datasets.load_digits, "breast_cancer": datasets.load_breast_cancer,
           "wine": datasets.load_wine}
UCI = {"power": datasets.load_power, "gas": datasets.load_gas, "hepmass": datasets.load_hepmass,
       "miniboone": datasets.load_miniboone, "bsds300": datasets.load_bsds300}
PAPER_TABLE3 = {"miniboone": (27.75, "58K"), "hepmass": (27.90, "41K"), "gas": (-0.22, "11K"),
                "power": (2.91, "8K"), "bsds300": (-121.22, "85K")}


def models(dim, num_inducing):
    return {
        "ferumal (shared points)": ("ferumal", dict(event_size=dim, num_blocks=4,
                                                    num_inducing=num_inducing,
                                                    inducing="shared"), 5e-3),
        "real_nvp": ("real_nvp", dict(event_size=dim, num_layers=8, hidden_units=(64, 64)), 1e-3),
        "glow": ("glow", dict(event_size=dim, num_layers=8, hidden_units=(64, 64)), 1e-3),
    }


def load(name, data_dir):
    if name in SKLEARN:
        return SKLEARN[name]()
    if data_dir is None:
        raise SystemExit(f"Data set {name!r} is a UCI set: pass --data-dir (the MAF data/ "
                         "folder). It is not on this machine; use the scikit-learn sets.")
    return UCI[name](data_dir)


def main(argv=None):
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=list(SKLEARN))
    p.add_argument("--num-train", type=int, default=500)
    p.add_argument("--num-inducing", type=int, default=50)
    p.add_argument("--steps", type=int, default=1500)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    rows = []
    for name in args.datasets:
        split = load(name, args.data_dir)
        n = min(args.num_train, len(split.train))
        split = datasets.subsample(split, n, seed=args.seed)
        for label, (flow, kwargs, lr) in models(split.dim, args.num_inducing).items():
            model, seconds, epochs = ferumal_common.train(
                flow, kwargs, split.train, split.validation, args.steps, 100, lr, patience=20,
                seed=args.seed)
            row = {"data": f"{name} (D={split.dim}, n={n})", "model": label,
                   "test NLL": evaluate(model, split.test).nll,
                   "train NLL": evaluate(model, split.train).nll,
                   "params": count_parameters(model), "epochs": epochs, "train s": seconds}
            rows.append(row)
            print(row, flush=True)
    notes = (f"Up to {args.steps} steps of batch 100 (early stopping, patience 20 epochs); "
             f"Ferumal N = {args.num_inducing} shared inducing points, lr 5e-3; RealNVP and "
             "Glow hidden (64, 64), lr 1e-3. Paper Table 3 (UCI, 500 examples, not "
             "reproducible without the data): " + ", ".join(
                 f"{k.upper()} {v[0]} ({v[1]})" for k, v in PAPER_TABLE3.items()) + ".")
    common.write_results(os.path.join(args.out, "ferumal_low_data.md"),
                         "Low-data regime: Ferumal flow vs RealNVP and Glow",
                         "python benchmarks/ferumal_low_data.py " + " ".join(argv), rows,
                         ["data", "model", "test NLL", "train NLL", "params", "epochs",
                          "train s"], notes)
    return rows


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
