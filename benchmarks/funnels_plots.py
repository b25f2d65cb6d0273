"""Bar charts of the funnel benchmark tables (reads the JSON twins, trains nothing).

    python benchmarks/funnels_plots.py --out docs/results --img docs/img
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfp_flows import plotting  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/results")
    parser.add_argument("--img", default="docs/img")
    args = parser.parse_args()
    plt = plotting._pyplot()
    with open(os.path.join(args.out, "funnels_tabular.json")) as f:
        rows = json.load(f)["rows"]
    data_sets = sorted({r["data"] for r in rows})
    fig, axes = plt.subplots(1, len(data_sets), figsize=(5 * len(data_sets), 3.5))
    for ax, name in zip(axes, data_sets, strict=True):
        sub = [r for r in rows if r["data"] == name]
        ax.bar([f"{r['model']}\n(latent {r['latent']})" for r in sub],
               [r["test log-lik (nats)"] for r in sub],
               color=["C0" if r["model"].startswith("F-") else "C7" for r in sub])
        ax.set_title(f"{name}: test log-lik (nats, higher is better)", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(args.img, "funnels_tabular.png"), dpi=90)
    with open(os.path.join(args.out, "funnels_anomaly.json")) as f:
        rows = json.load(f)["rows"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar([f"{r['model']}\n(latent {r['latent']})" for r in rows], [r["AUROC"] for r in rows])
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set_ylim(0.4, 1.0)
    ax.set_title("digits 0-4 vs 5-9: AUROC of -log p(x)", fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(args.img, "funnels_anomaly.png"), dpi=90)


if __name__ == "__main__":
    main()
