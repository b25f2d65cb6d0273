"""Full-data MINIBOONE (paper, Table 2): Ferumal flow vs RealNVP and Glow-style.

Needs the MAF data folder (`--data-dir`, containing `miniboone/data.npy`); it is
not on the machine this library was developed on, so this benchmark has not
been run here. Without `--data-dir` the script stops with a clear message.

Paper (Table 2, test NLL in nats): RealNVP 13.55, Glow 11.35, Ferumal 11.25;
parameters (Table 4): RealNVP 377K, Glow 395K, Ferumal 117K.

    python benchmarks/ferumal_miniboone.py --data-dir DATA_DIR --steps 20000
"""
# ruff: noqa: I001  (benchmarks.common must set the TF environment before TF is imported)

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common, ferumal_common  # noqa: E402

from tfp_flows import datasets  # noqa: E402
from tfp_flows.keras.train import count_parameters, evaluate  # noqa: E402

PAPER = {"real_nvp": (13.55, "377K"), "glow": (11.35, "395K"), "ferumal": (11.25, "117K")}


def main(argv=None):
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--num-blocks", type=int, default=5)
    p.add_argument("--num-inducing", type=int, default=64)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    if args.data_dir is None:
        p.error("MINIBOONE needs --data-dir: the MAF data/ folder with miniboone/data.npy "
                "(not included; see https://zenodo.org/record/1161203). The paper's table "
                "cannot be reproduced without it.")
    split = datasets.load_miniboone(args.data_dir)  # FileNotFoundError names the missing file
    dim, layers = split.dim, 2 * args.num_blocks
    models = {
        "ferumal": ("ferumal", dict(event_size=dim, num_blocks=args.num_blocks,
                                    num_inducing=args.num_inducing), 5e-3),
        "real_nvp": ("real_nvp", dict(event_size=dim, num_layers=layers,
                                      hidden_units=(256, 256)), 1e-3),
        "glow": ("glow", dict(event_size=dim, num_layers=layers, hidden_units=(256, 256)), 1e-3),
    }
    rows = []
    for label, (flow, kwargs, lr) in models.items():
        model, seconds, epochs = ferumal_common.train(
            flow, kwargs, split.train, split.validation, args.steps, args.batch_size, lr,
            patience=10, seed=args.seed)
        rows.append({"model": label, "test NLL": evaluate(model, split.test).nll,
                     "params": count_parameters(model), "paper NLL": PAPER[label][0],
                     "paper params": PAPER[label][1], "epochs": epochs, "train s": seconds})
        print(rows[-1], flush=True)
    common.write_results(os.path.join(args.out, "ferumal_miniboone.md"),
                         "MINIBOONE: Ferumal flow vs RealNVP and Glow",
                         "python benchmarks/ferumal_miniboone.py " + " ".join(argv), rows,
                         ["model", "test NLL", "params", "paper NLL", "paper params", "epochs",
                          "train s"])


if __name__ == "__main__":
    main()
