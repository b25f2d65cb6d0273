"""Plots of 2-D densities and samples (matplotlib, Agg backend).

matplotlib is an optional dependency (the `plots` and `test` extras); it is
imported only when a plot is drawn, and a missing install raises an
`ImportError` that says how to get it. Nothing here imports TensorFlow: a
density is any callable `log_prob_fn(points) -> log densities` on a numpy
array `[n, 2]` (e.g. `lambda p: model.log_prob(p).numpy()`).

#### Examples

```python
from tfp_flows import plotting
bounds = plotting.data_bounds(x_train)
fig = plotting.density_and_samples_figure(
    lambda p: model.log_prob(p).numpy(), model.sample(2000, seed=(0, 1)).numpy(),
    data=x_train, bounds=bounds)
plotting.save_figure(fig, "moons.png")
```
"""

import os

import numpy as np

__all__ = ["data_bounds", "density_and_samples_figure", "density_grid", "figure_grid",
           "plot_density", "plot_samples", "save_figure"]

_INSTALL_HINT = ("Plotting needs matplotlib, which is not installed; install it with "
                 "`pip install 'tfp_flows[plots]'` (or `pip install matplotlib`).")


def _pyplot():
    """Imports `matplotlib.pyplot` with the non-interactive Agg backend."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _check_points(points, name):
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[-1] != 2:
        raise ValueError(f"`{name}` must be an array of shape [n, 2]; got shape {points.shape}.")
    return points


def data_bounds(points, margin=0.15, quantile=0.005):
    """Plot bounds `(xmin, xmax, ymin, ymax)` covering `points` plus a relative margin.

    Extreme quantiles (not min/max) are used so that a few outliers do not
    shrink the interesting region to a corner of the plot.
    """
    points = _check_points(points, "points")
    lo = np.quantile(points, quantile, axis=0)
    hi = np.quantile(points, 1.0 - quantile, axis=0)
    pad = margin * np.maximum(hi - lo, 1e-6)
    lo, hi = lo - pad, hi + pad
    return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])


def _check_bounds(bounds):
    try:
        xmin, xmax, ymin, ymax = (float(b) for b in bounds)
    except (TypeError, ValueError) as err:
        raise ValueError("`bounds` must be four numbers (xmin, xmax, ymin, ymax); "
                         f"got {bounds!r}.") from err
    if not (xmin < xmax and ymin < ymax):
        raise ValueError(f"`bounds` must satisfy xmin < xmax and ymin < ymax; got {bounds!r}.")
    return xmin, xmax, ymin, ymax


def density_grid(log_prob_fn, bounds, num_points=100, batch_size=4096):
    """Evaluates `log_prob_fn` on a regular `num_points x num_points` grid.

    Args:
      log_prob_fn: callable `[n, 2] float32 array -> [n]` log densities.
      bounds: `(xmin, xmax, ymin, ymax)`.
      num_points: grid points per axis (>= 2).
      batch_size: points per call of `log_prob_fn`.

    Returns:
      `(xs, ys, log_p)`: the axis coordinates `[num_points]` each and the log
      densities `[num_points (y), num_points (x)]`, ready for `imshow`/`contour`.
    """
    xmin, xmax, ymin, ymax = _check_bounds(bounds)
    if isinstance(num_points, bool) or not isinstance(num_points, int | np.integer) \
            or num_points < 2:
        raise ValueError(f"`num_points` must be an integer >= 2; got {num_points!r}.")
    xs = np.linspace(xmin, xmax, num_points, dtype=np.float32)
    ys = np.linspace(ymin, ymax, num_points, dtype=np.float32)
    gx, gy = np.meshgrid(xs, ys)
    points = np.stack([gx.ravel(), gy.ravel()], axis=1)
    values = [np.asarray(log_prob_fn(points[i:i + batch_size]), dtype=np.float64).reshape(-1)
              for i in range(0, len(points), batch_size)]
    log_p = np.concatenate(values)
    if log_p.shape != (len(points),):
        raise ValueError(f"`log_prob_fn` must return one value per point; got {log_p.shape} "
                         f"for {len(points)} points.")
    return xs, ys, log_p.reshape(num_points, num_points)


def plot_density(ax, log_prob_fn, bounds, num_points=100, title=None, cmap="viridis",
                 colorbar=False):
    """Draws the density `exp(log_prob_fn)` on a grid into `ax`; returns the image.

    Non-finite log densities are drawn as zero density. `colorbar=True` adds
    a colour bar labelled "density" beside `ax`.
    """
    xs, ys, log_p = density_grid(log_prob_fn, bounds, num_points)
    density = np.where(np.isfinite(log_p), np.exp(np.minimum(log_p, 50.0)), 0.0)
    image = ax.imshow(density, origin="lower", extent=(xs[0], xs[-1], ys[0], ys[-1]),
                      aspect="auto", cmap=cmap)
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label="density")
    return image


def plot_samples(ax, samples, bounds=None, title=None, color="C0", size=2.0, alpha=0.5):
    """Scatter plot of `[n, 2]` samples into `ax` (clipped to `bounds` if given)."""
    samples = _check_points(samples, "samples")
    ax.scatter(samples[:, 0], samples[:, 1], s=size, alpha=alpha, color=color, linewidths=0)
    if bounds is not None:
        xmin, xmax, ymin, ymax = _check_bounds(bounds)
        ax.set_xlim(xmin, xmax)
        ax.set_ylim(ymin, ymax)
    if title:
        ax.set_title(title)


def density_and_samples_figure(log_prob_fn, samples, data=None, bounds=None, num_points=100,
                               title=None):
    """A figure with panels: [data,] model density, model samples.

    Args:
      log_prob_fn: callable `[n, 2] -> [n]` model log density.
      samples: `[n, 2]` model samples.
      data: optional `[n, 2]` training data, drawn in the first panel.
      bounds: `(xmin, xmax, ymin, ymax)`; default `data_bounds(data)` (or of the samples).
      num_points: grid points per axis for the density.
      title: optional figure title.

    Returns:
      A matplotlib `Figure`.
    """
    plt = _pyplot()
    samples = _check_points(samples, "samples")
    if bounds is None:
        bounds = data_bounds(samples if data is None else data)
    panels = 2 if data is None else 3
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 4))
    axes = list(np.atleast_1d(axes))
    if data is not None:
        plot_samples(axes.pop(0), data, bounds, title="data", color="k")
    plot_density(axes[0], log_prob_fn, bounds, num_points, title="model density")
    plot_samples(axes[1], samples, bounds, title="model samples")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def figure_grid(num_rows, num_cols, panel_size=3.0):
    """`(fig, axes[num_rows, num_cols])` from pyplot, imported lazily."""
    plt = _pyplot()
    fig, axes = plt.subplots(num_rows, num_cols, figsize=(panel_size * num_cols,
                                                          panel_size * num_rows), squeeze=False)
    return fig, axes


def save_figure(fig, path, dpi=100):
    """Saves `fig` to `path` (parent directories created) and closes it."""
    plt = _pyplot()
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
