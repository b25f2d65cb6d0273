"""LGF-MAF vs MAF on tabular data (Cornish et al., 2019, Table 1), test log-likelihood.

The paper's Table 1 uses the UCI sets of Papamakarios et al. (LGF-MAF: POWER
0.48, GAS 12.02, HEPMASS -16.63, MINIBOONE -9.93). With `--data-dir` pointing
at the MAF data folder those load; without it (as on the machine that made
docs/lgf.md) the script falls back to scikit-learn's digits (64-D, dequantised)
and breast cancer (30-D), standardised as in `tfp_flows.datasets`.

MAF maximises the log-likelihood, LGF-MAF the ELBO; both Adam(1e-3), best
validation epoch restored. LGF test log-likelihood: importance sampling over
`u_{1:L}` with S = `--test-samples` (the paper's 1000). Also reported: the test
ELBO and the gap (IS estimate minus ELBO).

    python benchmarks/lgf_tabular.py --epochs 30
"""
# ruff: noqa: I001  (benchmarks.common must set the TF environment before TF is imported)

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

import numpy as np  # noqa: E402

from tfp_flows import datasets  # noqa: E402
from tfp_flows.keras.train import count_parameters, evaluate, fit  # noqa: E402

PAPER = {"power": 0.48, "gas": 12.02, "hepmass": -16.63, "miniboone": -9.93}


def models(dim):
    return {
        "MAF (10 layers, 2x100)": ("maf", "nll", dict(event_size=dim, num_layers=10,
                                                       hidden_units=(100, 100))),
        "LGF-MAF (5 layers, 2x100)": ("lgf_maf", "elbo", dict(
            event_size=dim, num_layers=5, index_size=min(dim, 8), hidden_units=(100, 100),
            st_hidden_units=(10, 10), prior_hidden_units=(50, 50),
            posterior_hidden_units=(50, 50))),
    }


def run(name, split, label, spec, args):
    flow, objective, kwargs = spec
    result = fit(flow, split.train, split.validation, flow_kwargs=kwargs, objective=objective,
                 seed=args.seed, learning_rate=1e-3, jit_compile=args.jit,
                 batch_size=args.batch_size, epochs=args.epochs, patience=args.patience)
    model = result.model
    dist = model.distribution
    test = split.test[:args.num_test]
    row = {"data": name, "model": label, "params": count_parameters(model),
           "train s": result.seconds}
    if flow == "lgf_maf":
        row["test LL"] = -evaluate(model, test, num_samples=args.test_samples, seed=1,
                                   batch_size=100, chunk_size=min(args.test_samples, 100)).nll
        row["test ELBO"] = float(np.mean(dist.elbo(test, seed=(3, 4))))
        row["gap (IS - ELBO)"] = row["test LL"] - row["test ELBO"]
    else:
        row["test LL"] = -evaluate(model, test).nll
    row["paper (LGF-MAF)"] = PAPER.get(name, "n/a")
    print(row, flush=True)
    return row


def main(argv=None):
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=None,
                   help="default: the UCI four with --data-dir, else digits and breast_cancer")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--num-test", type=int, default=1000)
    p.add_argument("--test-samples", type=int, default=1000)
    p.add_argument("--jit", action="store_true")
    p.set_defaults(out="docs")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    names = args.datasets or (list(PAPER) if args.data_dir else ["digits", "breast_cancer"])
    rows = []
    for name in names:
        split = datasets.load(name, data_dir=args.data_dir) if name in PAPER else (
            datasets.load(name))
        for label, spec in models(split.train.shape[1]).items():
            rows.append(run(name, split, label, spec, args))
    command = "python benchmarks/lgf_tabular.py " + " ".join(argv)
    common.write_results(
        os.path.join(args.out, "results", "lgf_tabular.md"), "LGF-MAF vs MAF, tabular",
        command, rows, ["data", "model", "params", "test LL", "test ELBO", "gap (IS - ELBO)",
                        "paper (LGF-MAF)", "train s"],
        notes=f"Up to {args.epochs} epochs (early stopping, patience {args.patience}); LGF test "
              f"LL by importance sampling with S = {args.test_samples}. UCI data "
              f"{'used' if args.data_dir else 'absent: scikit-learn data instead'}.")


if __name__ == "__main__":
    main()
