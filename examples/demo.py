"""The main job: train every family and the baselines on built-in data, print one table, write PNGs.

    python examples/demo.py --out demo_output

About ten minutes on two cores. Each model is trained with the library's
pipeline (`tfp_flows.keras.train.fit`: data-dependent initialisation on the first
1024 points, Adam 2e-3 under XLA) on two moons (2-D; the funnel maps 2-D ->
1-D), evaluated on held-out data with `tfp_flows.keras.train.evaluate` (exact
log-likelihood, or an importance-sampled estimate where the family's
log-density is one), and plotted (density and samples) into the output
directory. `--quick` trains for a few steps (used by the test suite).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tfp_flows as tff  # noqa: E402
from tfp_flows.evaluation import markdown_table  # noqa: E402
from tfp_flows.internal import contract  # noqa: E402

# (label, family, registered flow, flow kwargs, objective)
MODELS = [
    ("RealNVP", "baseline", "real_nvp", dict(num_layers=6), "nll"),
    ("Glow", "baseline", "glow", dict(num_layers=6), "nll"),
    ("MAF", "baseline", "maf", dict(num_layers=5), "nll"),
    ("NSF (spline coupling)", "baseline", "neural_spline", dict(num_layers=4), "nll"),
    ("Ferumal (kernel coupling)", "kernelised coupling", "ferumal",
     dict(num_blocks=4, num_inducing=32), "nll"),
    ("FFJORD", "continuous-time", "ffjord",
     dict(hidden_units=(32, 32), solver="rk4", num_steps=8), "nll"),
    ("Funnel NSF 2->1", "funnel", "funnel_nsf", dict(latent_size=1, num_layers=4), "nll"),
    ("Augmented RealNVP (B=2)", "augmentation", "augmented_real_nvp",
     dict(num_augment=2, num_layers=6), "elbo"),
    ("LGF-RealNVP", "LGF / CIF", "lgf_real_nvp", dict(num_layers=4), "elbo"),
]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="demo_output", help="directory for the PNGs and table")
    p.add_argument("--dataset", default="moons", help="a 2-D dataset of tfp_flows.datasets")
    p.add_argument("--num-samples", type=int, default=4000, help="training points")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--only", default=None, help="comma-separated flow names to run")
    p.add_argument("--quick", action="store_true", help="a few steps per model (smoke test)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def train_one(label, flow, kwargs, objective, split, args):
    result = tff.keras.train.fit(
        flow, split.train, split.validation, flow_kwargs={"event_size": split.dim, **kwargs},
        objective=objective, seed=args.seed, learning_rate=2e-3, jit_compile=True,
        batch_size=args.batch_size, epochs=1 if args.quick else args.epochs,
        steps_per_epoch=2 if args.quick else None, verbose=2)
    nll, kind = tff.keras.train.evaluate(result.model, split.test,
                                         num_samples=16 if args.quick else 200, seed=args.seed)
    return result.model, {"model": label, "flow": flow, "test NLL (nats)": nll, "log p(x)": kind,
                          "params": tff.keras.train.count_parameters(result.model),
                          "train s": result.seconds}


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    split = tff.datasets.load(args.dataset, num_samples=args.num_samples, seed=args.seed)
    if split.dim != 2:
        raise SystemExit(f"--dataset must be 2-D for the demo's plots; {args.dataset} is "
                         f"{split.dim}-D.")
    chosen = MODELS if args.only is None else [m for m in MODELS if m[2] in args.only.split(",")]
    if not chosen:
        raise SystemExit(f"--only matched no model; choose from {[m[2] for m in MODELS]}.")
    from tfp_flows import plotting

    bounds = plotting.data_bounds(split.train)
    fig, axes = plotting.figure_grid(2, len(chosen) + 1)
    plotting.plot_samples(axes[0][0], split.test, bounds, title=f"{args.dataset} (test data)")
    axes[1][0].axis("off")
    rows = []
    for i, (label, family, flow, kwargs, objective) in enumerate(chosen, start=1):
        print(f"\n=== {label} [{family}] ===", flush=True)
        model, row = train_one(label, flow, kwargs, objective, split, args)
        rows.append({"family": family, **row})
        est = 16 if args.quick else 100
        log_prob_fn = _log_prob_fn(model, est)
        plotting.plot_density(axes[0][i], log_prob_fn, bounds, num_points=60 if args.quick else 100,
                              title=label)
        samples = model.sample(2000, seed=(args.seed, i)).numpy()
        plotting.plot_samples(axes[1][i], samples, bounds, title="samples")
    plotting.save_figure(fig, os.path.join(args.out, "demo_densities_and_samples.png"))
    table = markdown_table(rows, ["family", "model", "test NLL (nats)", "log p(x)", "params",
                                  "train s"])
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(table + "\n")
    print("\n" + table)
    print(f"\nPlots and table written to {os.path.abspath(args.out)}/")
    return 0


def _log_prob_fn(model, num_samples):
    if contract.log_prob_kind(model.distribution) == contract.IMPORTANCE_SAMPLED:
        return lambda p: model.log_prob(p.astype("float32"), num_samples=num_samples,
                                        seed=(0, 0)).numpy()
    return lambda p: model.log_prob(p.astype("float32")).numpy()


if __name__ == "__main__":
    sys.exit(main())
