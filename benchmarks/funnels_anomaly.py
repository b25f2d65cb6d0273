"""Anomaly detection with funnels, in the spirit of the paper's Table 4.

Train on some digit classes of scikit-learn's 8x8 digits (dequantised), then
compare the likelihood of held-out test images of the normal classes with
test images of the unseen classes. Models: F-NSF (convolutional funnels, 2x2
kernels with stride 2, then NSF layers on the latent; paper A.9), F-MLP
(stacked MLP funnels with spline activations) at latent sizes 16 and 4, and
the NSF without reduction (latent 64).

Reported: bits per dimension of normal and anomalous test images, their
ratio (anomalous / normal; larger separates better, as in the paper) and the
AUROC of `-log p(x)` as an anomaly score. Bits per dimension are on the
dequantised grey-level scale (17 levels, values in [0, 17)), where they upper
bound the discrete code length: `log p_raw(x) = log p_std(x_std) -
sum_j log std_j` undoes the standardisation.

Fair comparison: every model's width is chosen so that all five have about
`--params` trainable parameters, and all get the same optimiser (Adam,
gradient norm clipped at 5), batch size, epoch budget, early stopping on the
validation split (normal classes only), XLA-compiled steps and
`keras.utils.set_random_seed(seed)`.

    python benchmarks/funnels_anomaly.py --epochs 100 --params 30000

The paper trains on MNIST and tests on Fashion-MNIST (neither is available
here); this is the same protocol on a much smaller data set.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks import common, funnels_common  # noqa: E402
from tfp_flows import datasets  # noqa: E402
from tfp_flows.evaluation import log_prob_values  # noqa: E402
from tfp_flows.keras.train import count_parameters  # noqa: E402


def _models(num_layers, params):
    """`[(label, latent, flow, kwargs)]`, each model's width matched to `params`.

    One width per model is searched (the NSF's hidden layers, the F-MLP's
    Gaussian decoders, and both the NSF-on-latent and the tile decoder of the
    convolutional F-NSF) so that all five models have about `params` trainable
    parameters.
    """
    builders = [
        ("F-NSF (conv)", 16, "funnel_conv",
         lambda w: {"image_shape": [8, 8], "num_funnels": 1, "num_layers": num_layers,
                    "hidden_units": [w, w], "decoder_hidden_units": [w]}),
        ("F-NSF (conv)", 4, "funnel_conv",
         lambda w: {"image_shape": [8, 8], "num_funnels": 2, "num_layers": num_layers,
                    "hidden_units": [w, w], "decoder_hidden_units": [w]}),
        ("F-MLP", 16, "funnel_mlp",
         lambda w: {"event_size": 64, "latent_sizes": [32, 16], "hidden_units": [w, w]}),
        ("F-MLP", 4, "funnel_mlp",
         lambda w: {"event_size": 64, "latent_sizes": [32, 16, 4], "hidden_units": [w, w]}),
        ("NSF", 64, "neural_spline",
         lambda w: {"event_size": 64, "num_layers": num_layers, "hidden_units": [w, w],
                    "lu_linear": True}),
    ]
    models = []
    for label, latent, flow, kwargs_for_width in builders:
        _, kwargs, _ = funnels_common.match_width(flow, kwargs_for_width, params,
                                                  range(4, 513, 2))
        models.append((label, latent, flow, kwargs))
    return models


def _log_std(normal_classes, seed):
    """Sum of log standard deviations used to standardise (to undo it)."""
    from sklearn.datasets import load_digits

    from tfp_flows.datasets import tabular

    bunch = load_digits()
    data = bunch.data + np.random.default_rng(seed).random(bunch.data.shape)
    train = tabular._fixed_split_indices(data.shape[0])[0]
    train = train[np.isin(bunch.target[train], normal_classes)]
    std = data[train].std(axis=0)
    return float(np.sum(np.log(np.where(std > 0, std, 1.0))))


def _auroc(normal_scores, anomalous_scores):
    """P(score of an anomaly > score of a normal example) (ties count one half)."""
    a = np.asarray(anomalous_scores)[:, None]
    n = np.asarray(normal_scores)[None, :]
    return float(np.mean((a > n) + 0.5 * (a == n)))


def main():
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--patience", type=int, default=None,
                        help="early-stopping patience in epochs (default max(5, epochs // 5))")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--normal-classes", default="0,1,2,3,4")
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--params", type=int, default=30000,
                        help="trainable parameters every model is matched to")
    parser.add_argument("--no-jit", action="store_true", help="do not XLA-compile the steps")
    args = parser.parse_args()
    normal = [int(c) for c in args.normal_classes.split(",")]
    split = datasets.load_digits_by_class(normal, seed=args.seed)
    log_std, dim = _log_std(normal, args.seed), split.dim
    rows = []
    for label, latent, flow, kwargs in _models(args.num_layers, args.params):
        model, info = funnels_common.fit_flow(
            flow, split.train, split.validation, args.epochs, batch_size=args.batch_size,
            seed=args.seed, patience=args.patience, jit_compile=not args.no_jit, **kwargs)
        # NLL on the raw grey-level scale: -log p_raw = -log p_std + sum log std.
        nll_n = -log_prob_values(model, split.test)[0] + log_std
        nll_a = -log_prob_values(model, split.anomalous)[0] + log_std
        bpd_n = funnels_common.bits_per_dim(nll_n.mean(), dim)
        bpd_a = funnels_common.bits_per_dim(nll_a.mean(), dim)
        med_n = funnels_common.bits_per_dim(np.median(nll_n), dim)
        med_a = funnels_common.bits_per_dim(np.median(nll_a), dim)
        rows.append({"model": label, "latent": latent,
                     "hidden": "x".join(str(h) for h in kwargs["hidden_units"]),
                     "bpd normal": bpd_n, "bpd anomalous": bpd_a, "ratio": bpd_a / bpd_n,
                     "median ratio": med_a / med_n, "AUROC": _auroc(nll_n, nll_a),
                     "params": count_parameters(model), "epochs (best)": info["best_epoch"],
                     "steps": info["steps"], "s/epoch": info["epoch_s"],
                     "train s": info["seconds"]})
        print(rows[-1], flush=True)
    command = "python benchmarks/funnels_anomaly.py " + " ".join(sys.argv[1:])
    common.write_results(
        os.path.join(args.out, "funnels_anomaly.md"),
        f"Anomaly detection on digits (normal classes {normal})", command.strip(), rows,
        ["model", "latent", "hidden", "bpd normal", "bpd anomalous", "ratio", "median ratio",
         "AUROC", "params", "epochs (best)", "steps", "s/epoch", "train s"],
        notes=(f"{len(split.train)} training images; {len(split.test)} normal and "
               f"{len(split.anomalous)} anomalous test images. Every model matched to about "
               f"{args.params} trainable parameters; Adam 1e-3 (clipnorm 5), batch "
               f"{args.batch_size}, at most {args.epochs} epochs with early stopping on the "
               f"validation NLL (patience {args.patience or max(5, args.epochs // 5)}), "
               f"best-validation weights restored; seed {args.seed}. 'median ratio' uses the "
               "median bits/dim of each set (robust to a few outlying images); 's/epoch' is "
               "the median epoch wall time after the first (tracing or compilation "
               "excluded) on the shared machine."))


if __name__ == "__main__":
    main()
