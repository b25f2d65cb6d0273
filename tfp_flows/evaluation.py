"""Evaluation helpers shared by the CLI, the demo and the benchmarks."""

import inspect

import numpy as np
import tensorflow as tf


def takes_num_samples(distribution):
    """Whether `distribution.log_prob` is an importance-sampled estimate taking `num_samples`."""
    fn = getattr(type(distribution), "_log_prob", None)
    if fn is None:
        return False
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "num_samples" in params


def mean_log_prob(model, x, num_samples=100, seed=0, batch_size=None):
    """Mean `log p(x)` (nats) of a `FlowModel`, in batches.

    Families whose `log_prob` is an importance-sampled estimate (augmentation,
    LGF) are evaluated with `num_samples` samples and a fresh stateless seed per
    batch. Returns `(mean, kind)`, `kind` "exact" or "importance-sampled (S=...)";
    a distribution whose `log_prob_is_exact` property is True (e.g. `Augmented`
    with `num_augment=0`) is labelled "exact".
    """
    dist = model.distribution
    estimated = takes_num_samples(dist)
    if batch_size is None:
        batch_size = 256 if estimated else 4096
    if estimated:
        fn = tf.function(lambda xb, s: model.log_prob(xb, num_samples=num_samples, seed=s),
                         reduce_retracing=True)
    else:
        fn = tf.function(lambda xb, s: model.log_prob(xb), reduce_retracing=True)
    values = []
    for i, start in enumerate(range(0, len(x), batch_size)):
        xb = tf.constant(x[start:start + batch_size], dtype=dist.dtype)
        values.append(fn(xb, tf.constant([seed, i], tf.int32)).numpy())
    mean = float(np.mean(np.concatenate(values)))
    exact = not estimated or getattr(dist, "log_prob_is_exact", False)
    return mean, ("exact" if exact else f"importance-sampled (S={num_samples})")


def markdown_table(rows, columns):
    """A Markdown table from a list of dicts (floats to 4 significant digits)."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
        return str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
