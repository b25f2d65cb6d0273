"""Held-out log-density: the one home of test NLL (CLI, demo, examples, benchmarks).

`log_prob_values` evaluates `log p(x)` of a `FlowModel` (or a bare
distribution of this library) in batches and reports the declared kind of
that number (`tfp_flows.internal.contract.log_prob_kind`): "exact",
"unbiased estimate" (Hutchinson traces), "importance-sampled (S=...)"
(augmentation, LGF: a stochastic lower bound in expectation, by Jensen) or
"bound". `mean_log_prob` is its mean; `tfp_flows.keras.train.evaluate` is minus
that mean (the test NLL). `mean_of_batches` batches any other callable
(e.g. a peer implementation a benchmark compares against).
"""

import weakref

import numpy as np
import tensorflow as tf

from tfp_flows.internal import contract, validation

__all__ = ["log_prob_values", "markdown_table", "mean_log_prob", "mean_of_batches"]


def log_prob_values(model, x, num_samples=100, seed=0, batch_size=None, conditional_input=None,
                    jit_compile=False, **log_prob_kwargs):
    """Per-example `log p(x)` (nats) of a `FlowModel` or distribution, and the kind of number.

    Args:
      model: a `tfp_flows.keras.FlowModel`, or a distribution of this library.
      x: array `[N, D]`.
      num_samples: importance samples S for distributions whose declared
        `log_prob_kind` is "importance-sampled" (ignored otherwise).
      seed: int; batch `i` gets the stateless seed `[seed, i]` (importance
        sampling, Hutchinson probes).
      batch_size: rows per call (default 256 for importance-sampled
        densities, else 4096).
      conditional_input: array `[N, C]` for conditional flows, or None.
      jit_compile: XLA-compile the batched `log_prob`.
      **log_prob_kwargs: passed on to `log_prob` (e.g. `chunk_size`).

    Returns:
      `(values, kind)`: a float array `[N]` and a description such as
      `"exact"` or `"importance-sampled (S=100)"`.
    """
    dist = getattr(model, "distribution", model)
    kind = contract.log_prob_kind(dist)
    sampled = kind == contract.IMPORTANCE_SAMPLED
    if batch_size is None:
        batch_size = 256 if sampled else 4096
    batch_size = validation.positive_int(batch_size, "batch_size")
    if conditional_input is not None and len(conditional_input) != len(x):
        raise ValueError("`conditional_input` must have one row per row of `x`; got "
                         f"{len(conditional_input)} rows for {len(x)}.")
    extra = dict(log_prob_kwargs)
    if sampled:
        extra["num_samples"] = validation.positive_int(num_samples, "num_samples")
    fn = _batched_log_prob(dist, extra, jit_compile)
    values = []
    for i, start in enumerate(range(0, len(x), batch_size)):
        xb = tf.constant(x[start:start + batch_size], dtype=dist.dtype)
        cb = (None if conditional_input is None else
              tf.constant(conditional_input[start:start + batch_size], dtype=dist.dtype))
        values.append(np.asarray(fn(xb, cb, tf.constant([seed, i], tf.int32))))
    out = np.concatenate(values) if values else np.zeros([0])
    return out, contract.describe_kind(kind, num_samples if sampled else None)


# One compiled `log_prob` per (distribution, options): repeated evaluations of the same model
# (e.g. after every epoch) reuse its trace instead of building a new tf.function each time.
_COMPILED = weakref.WeakKeyDictionary()


def _batched_log_prob(dist, extra, jit_compile):
    """The `tf.function` computing `contract.log_prob(dist, x, c, seed=s, **extra)`, cached."""
    def build():
        return tf.function(lambda xb, cb, s: contract.log_prob(dist, xb, cb, seed=s, **extra),
                           reduce_retracing=True, jit_compile=jit_compile, autograph=False)
    try:
        key = (bool(jit_compile), tuple(sorted(extra.items())))
        hash(key)
        per_dist = _COMPILED.setdefault(dist, {})
    except TypeError:  # unhashable options or a distribution without weak references
        return build()
    if key not in per_dist:
        per_dist[key] = build()
    return per_dist[key]


def mean_log_prob(model, x, num_samples=100, seed=0, batch_size=None, conditional_input=None,
                  **kwargs):
    """Mean `log p(x)` (nats) of a `FlowModel`, in batches, and the kind of that number.

    The kind is the distribution's declared `log_prob_kind`
    (`tfp_flows.internal.contract`). Importance-sampled families
    (augmentation, LGF) are evaluated with `num_samples` samples; every
    stochastic estimate (importance sampling, Hutchinson traces) gets a fresh
    stateless seed per batch. Returns `(mean, kind)`, `kind` e.g. `"exact"`,
    `"unbiased estimate"` or `"importance-sampled (S=100)"`. Other keyword
    arguments as `log_prob_values`.
    """
    values, kind = log_prob_values(model, x, num_samples, seed, batch_size, conditional_input,
                                   **kwargs)
    return float(np.mean(values)), kind


def mean_of_batches(fn, x, batch_size=1000):
    """Mean of `fn(x[i:i + batch_size])` over all rows of `x` (one value per row).

    For callables that are not a library distribution, e.g. the `log_prob`
    of a peer implementation a benchmark compares against. `x` is converted
    with `tf.constant` batch by batch (its dtype is kept).
    """
    batch_size = validation.positive_int(batch_size, "batch_size")
    values = [np.asarray(fn(tf.constant(x[i:i + batch_size])))
              for i in range(0, len(x), batch_size)]
    return float(np.mean(np.concatenate(values)))


def markdown_table(rows, columns):
    """A Markdown table from a list of dicts (floats to 4 significant digits)."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
        return str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
