"""Evaluation helpers shared by the CLI, the demo and the benchmarks."""

import numpy as np
import tensorflow as tf

from tfp_flows.internal import contract


def mean_log_prob(model, x, num_samples=100, seed=0, batch_size=None, conditional_input=None):
    """Mean `log p(x)` (nats) of a `FlowModel`, in batches, and the kind of that number.

    The kind is the distribution's declared `log_prob_kind`
    (`tfp_flows.internal.contract`). Importance-sampled families
    (augmentation, LGF) are evaluated with `num_samples` samples; every
    stochastic estimate (importance sampling, Hutchinson traces) gets a fresh
    stateless seed per batch. Returns `(mean, kind)`, `kind` e.g. `"exact"`,
    `"unbiased estimate"` or `"importance-sampled (S=100)"`.
    """
    dist = model.distribution
    kind = contract.log_prob_kind(dist)
    sampled = kind == contract.IMPORTANCE_SAMPLED
    if batch_size is None:
        batch_size = 256 if sampled else 4096
    extra = {"num_samples": num_samples} if sampled else {}
    fn = tf.function(lambda xb, cb, s: model.log_prob(xb, conditional_input=cb, seed=s,
                                                      **extra), reduce_retracing=True)
    values = []
    for i, start in enumerate(range(0, len(x), batch_size)):
        xb = tf.constant(x[start:start + batch_size], dtype=dist.dtype)
        cb = (None if conditional_input is None else
              tf.constant(conditional_input[start:start + batch_size], dtype=dist.dtype))
        values.append(fn(xb, cb, tf.constant([seed, i], tf.int32)).numpy())
    mean = float(np.mean(np.concatenate(values)))
    return mean, contract.describe_kind(kind, num_samples if sampled else None)


def markdown_table(rows, columns):
    """A Markdown table from a list of dicts (floats to 4 significant digits)."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
        return str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
