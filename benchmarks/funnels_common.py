"""Shared training loop and parameter matching of the funnel benchmarks (Klein et al., 2021).

`fit_flow` builds a registered flow by name, initialises it from data
(ActNorm), trains it by maximum likelihood with the library's pipeline
(`tfp_flows.keras.train.fit`) and returns
the model with the weights of the epoch with the best validation NLL
(early stopping on the validation split, never on the test split). Every
model of a benchmark gets the same optimiser, batch size, epoch budget and
patience, and `keras.utils.set_random_seed(seed)` before it is built.

`match_width` picks, for a model whose size is set by one hidden width, the
width whose trainable-parameter count is closest to a target (models are
built, not trained, to count), so a funnel and its baseline can be compared
at about the same number of parameters.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402,F401  (sets the TF environment first)
from tfp_flows.keras import FlowModel  # noqa: E402
from tfp_flows.keras.train import count_parameters, fit  # noqa: E402

LN2 = float(np.log(2.0))


def fit_flow(flow, train, validation, epochs, batch_size=128, learning_rate=1e-3, seed=0,
             jit_compile=True, patience=None, **flow_kwargs):
    """Trains flow `flow` by maximum likelihood with early stopping (`tfp_flows.keras.train.fit`).

    Args:
      flow: Name of a registered flow.
      train, validation: Float arrays `[N, D]`.
      epochs: Maximum number of epochs (positive int).
      batch_size, learning_rate: Adam (gradient norm clipped at 5, as in the
        paper's A.6) with a constant learning rate.
      seed: Int seed; `keras.utils.set_random_seed(seed)` runs before the model
        is built, so the initial weights and the batch order are reproducible.
      jit_compile: Whether to XLA-compile the train and test steps.
      patience: Epochs without a better validation NLL before stopping
        (default `max(5, epochs // 5)`); the best epoch's weights are restored.
      **flow_kwargs: Passed on to the flow builder.

    Returns:
      `(model, info)`: `info` holds ``seconds`` (whole fit), ``epochs_run``,
      ``best_epoch`` (1-based), ``steps`` (optimiser steps taken) and
      ``epoch_s`` (median wall time of the epochs after the first).

    Raises:
      ValueError: If `epochs` is not a positive int.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive int; got {epochs!r}.")
    patience = max(5, epochs // 5) if patience is None else patience
    result = fit(flow, train, validation, flow_kwargs=flow_kwargs, seed=seed, epochs=epochs,
                 batch_size=batch_size, learning_rate=learning_rate, clipnorm=5.0,
                 jit_compile=jit_compile, patience=patience)
    later = result.median_epoch_seconds
    info = {"seconds": result.seconds, "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch, "steps": result.steps,
            "epoch_s": later if np.isfinite(later) else result.seconds}
    return result.model, info


def flow_parameters(flow, **flow_kwargs):
    """Trainable parameters of registered flow `flow` (built, not trained)."""
    return count_parameters(FlowModel.from_flow(flow, **flow_kwargs))


def match_width(flow, kwargs_for_width, target, widths):
    """The hidden width whose model's parameter count is closest to `target`.

    The count grows with the width, so the candidates are bisected (about
    `log2(len(widths))` models are built) and the two neighbours of `target`
    compared.

    Args:
      flow: Name of a registered flow.
      kwargs_for_width: Callable `width -> flow kwargs`.
      target: Positive int, the parameter count to match.
      widths: Candidate widths (positive ints).

    Returns:
      `(width, kwargs, params)` of the closest candidate.

    Raises:
      ValueError: If `target` is not positive or `widths` is empty.
    """
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or target <= 0:
        raise ValueError(f"`target` must be a positive int parameter count; got {target!r}.")
    widths = sorted(set(int(w) for w in widths))
    if not widths:
        raise ValueError("`widths` must hold at least one candidate width; got none.")
    cache = {}

    def count(i):
        if i not in cache:
            kwargs = kwargs_for_width(widths[i])
            cache[i] = (flow_parameters(flow, **kwargs), kwargs)
        return cache[i][0]

    lo, hi = 0, len(widths) - 1  # first index with count >= target, or the last one
    while lo < hi:
        mid = (lo + hi) // 2
        if count(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    best = min({max(lo - 1, 0), lo}, key=lambda i: abs(count(i) - target))
    return widths[best], cache[best][1], cache[best][0]


def bits_per_dim(nll, dim):
    """Nats per example -> bits per dimension."""
    return nll / (dim * LN2)
