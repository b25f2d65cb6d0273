"""The PNGs `tfp-flows fit` writes for 2-D data (matplotlib, the `plots` extra)."""

import os

import numpy as np
import tensorflow as tf

from tfp_flows import plotting
from tfp_flows.internal import contract


def save_run_plots(model, split, run_dir, eval_samples, seed, flow=None, test_nll=None):
    """`density.png` (model density on a grid) and `samples.png`; returns the paths written.

    Both are titled with the flow's name and test NLL (when given); the
    density has a colour bar. Importance-sampled densities use
    `min(eval_samples, 32)` samples on the grid (10^4 points).
    """
    bounds = plotting.data_bounds(split.train)
    estimated = contract.log_prob_kind(model.distribution) == contract.IMPORTANCE_SAMPLED
    s = min(eval_samples, 32) if estimated else None
    name = flow or type(model.distribution).__name__
    heading = f"{name} on {split.name}" + (
        "" if test_nll is None else f": test NLL {test_nll:.3f} nats")

    def log_prob_fn(points):
        kwargs = {"num_samples": s, "seed": tf.constant([seed, 7], tf.int32)} if s else {}
        return model.log_prob(tf.constant(points, model.distribution.dtype), **kwargs).numpy()

    fig, axes = plotting.figure_grid(1, 1, panel_size=4.5)
    fig.set_size_inches(5.5, 4.8)
    plotting.plot_density(axes[0, 0], log_prob_fn, bounds, colorbar=True,
                          title="model density" + (f" (S={s})" if s else ""))
    fig.suptitle(heading, fontsize=10)
    fig.tight_layout()
    density = plotting.save_figure(fig, os.path.join(run_dir, "density.png"))

    samples = np.asarray(model.sample(2000, seed=tf.constant([seed, 11], tf.int32)))
    fig, axes = plotting.figure_grid(1, 2, panel_size=4.0)
    plotting.plot_samples(axes[0, 0], split.train[:2000], bounds, title="training data",
                          color="k")
    plotting.plot_samples(axes[0, 1], samples, bounds, title="model samples")
    fig.suptitle(heading, fontsize=10)
    fig.tight_layout()
    sample_path = plotting.save_figure(fig, os.path.join(run_dir, "samples.png"))
    return [density, sample_path]
