"""The one training pipeline: build -> initialise from data -> compile -> fit -> evaluate.

Every caller (the `tfp-flows` CLI, `examples/`, `benchmarks/`) trains with
`fit`, measures held-out NLL with `evaluate` and counts parameters with
`count_parameters`, so they agree on the order of the steps, the data used
for initialisation, early stopping and what a "parameter" is:

1. `keras.utils.set_random_seed(seed)` (initial weights and the minibatch
   order), then the model is built (from a registered flow name, a
   distribution, or taken as given);
2. data-dependent initialisation (`FlowModel.initialize_from_data`: ActNorm
   statistics, inducing points, length scales) on the first `init_rows`
   training rows (default `DEFAULT_INIT_ROWS` = 1024), once, before compile;
3. `model.compile(optimizer, jit_compile, steps_per_execution)`;
4. `model.fit`, guarded (`guard=True`: the first NaN / Inf training loss stops
   it with `tfp_flows.keras.NonFiniteLossError` naming the step and the part that
   produced it, and the weights from before that step are restored), with early
   stopping on `val_loss` (`patience`, best weights restored) and an optional
   best-weights checkpoint file.

#### Examples

```python
from tfp_flows import datasets
from tfp_flows.keras import train

split = datasets.load("moons", num_samples=2000, seed=0)
result = train.fit("real_nvp", split.train, split.validation,
                   flow_kwargs={"event_size": 2, "num_layers": 4}, epochs=20, patience=5)
nll, kind = train.evaluate(result.model, split.test)
print(nll, kind, train.count_parameters(result.model), result.compile_seconds,
      result.train_seconds)
```
"""

import dataclasses
import time
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from tfp_flows import evaluation
from tfp_flows.internal import keras_owned, validation
from tfp_flows.keras import guard as guard_lib
from tfp_flows.keras import objectives
from tfp_flows.keras.model import FlowModel

__all__ = ["DEFAULT_INIT_ROWS", "Evaluation", "TrainResult", "build_model", "count_parameters",
           "evaluate", "fit", "resolve_objective"]

DEFAULT_INIT_ROWS = 1024
"""Training rows used for data-dependent initialisation unless `init_rows` says otherwise."""


@dataclasses.dataclass
class TrainResult:
    """What `fit` returns.

    Attributes:
      model: the trained `FlowModel` (best validation weights restored when
        early stopping ran).
      history: `{metric: [value per epoch]}` (`loss`, and `val_loss` with
        validation data), floats.
      epoch_seconds: wall seconds of every epoch; the first includes tracing
        and (with `jit_compile`) XLA compilation of the train and test steps.
      seconds: wall seconds of the whole `model.fit` (tracing included).
      steps: optimiser steps taken.
      best_epoch: 1-based epoch of the lowest `val_loss` (of `loss` without
        validation data); None if no epoch ran.
    """

    model: FlowModel
    history: dict
    epoch_seconds: list
    seconds: float
    steps: int
    best_epoch: int | None

    @property
    def epochs_run(self):
        """Number of epochs that ran (fewer than asked when early stopping ended training)."""
        return len(self.history.get("loss", []))

    @property
    def compile_seconds(self):
        """Wall seconds of the first epoch: tracing and compilation, plus that epoch's steps."""
        return self.epoch_seconds[0] if self.epoch_seconds else 0.0

    @property
    def train_seconds(self):
        """Wall seconds of the epochs after the first (compiled steps only; 0 after one)."""
        return float(sum(self.epoch_seconds[1:]))

    @property
    def median_epoch_seconds(self):
        """Median wall seconds of the epochs after the first (NaN after one epoch)."""
        later = self.epoch_seconds[1:]
        return float(np.median(later)) if later else float("nan")


class Evaluation(NamedTuple):
    """What `evaluate` returns: mean NLL (nats) and the kind of log-density it is minus."""

    nll: float
    kind: str


class _EpochTimer(keras.callbacks.Callback):
    """Wall time of every epoch (the first includes tracing / XLA compilation)."""

    def __init__(self):
        super().__init__()
        self.times = []
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


def resolve_objective(objective, distribution):
    """`"auto"` -> `"elbo"` if `distribution` has an `elbo` method, else `"nll"`; else as given."""
    if isinstance(objective, str) and objective == "auto":
        return "elbo" if hasattr(distribution, "elbo") else "nll"
    return objective


def build_model(flow, *, flow_kwargs=None, objective=None, seed=0):
    """A `FlowModel` from a registered flow name, a distribution, or a `FlowModel` (as is).

    `objective` (an `Objective`, a name, or `"auto"`; None keeps the model's,
    maximum likelihood for a new one) is set on the model.
    """
    if isinstance(flow, FlowModel):
        if flow_kwargs:
            raise ValueError("`flow_kwargs` only applies to a flow given by name; got a "
                             f"FlowModel and flow_kwargs={flow_kwargs!r}.")
        model = flow
    elif isinstance(flow, str):
        model = FlowModel.from_flow(flow, seed=seed, **(flow_kwargs or {}))
    elif hasattr(flow, "log_prob"):
        if flow_kwargs:
            raise ValueError("`flow_kwargs` only applies to a flow given by name; got a "
                             f"distribution and flow_kwargs={flow_kwargs!r}.")
        model = FlowModel(flow, seed=seed)
    else:
        raise TypeError("`model` must be a FlowModel, a registered flow name or a "
                        f"distribution; got {type(flow).__name__}.")
    objective = resolve_objective(objective, model.distribution)
    if objective is not None:
        model.objective = objectives.get(objective)
    return model


def _inputs(x, c, name):
    if c is None:
        return x
    if len(c) != len(x):
        raise ValueError(f"`{name}` must have one row per data row; got {len(c)} rows for "
                         f"{len(x)}.")
    return {"x": x, "conditional_input": c}


def _validation(validation_data, validation_conditional_input=None):
    """`x_val`, `(x_val,)` or `(x_val, c_val)` (+ `c_val`) -> Keras' `validation_data`."""
    if validation_data is None:
        if validation_conditional_input is not None:
            raise ValueError("`validation_conditional_input` needs `validation_data`; got none.")
        return None
    if isinstance(validation_data, tuple | list):
        if len(validation_data) not in (1, 2):
            raise ValueError("`validation_data` must be an array, `(x_val,)` or `(x_val, "
                             f"conditional_input_val)`; got a sequence of {len(validation_data)}.")
        x_val = validation_data[0]
        c_val = validation_data[1] if len(validation_data) == 2 else None
    else:
        x_val, c_val = validation_data, None
    if validation_conditional_input is not None:
        if c_val is not None:
            raise ValueError("Give the validation condition once: in `validation_data` or as "
                             "`validation_conditional_input`, not both.")
        c_val = validation_conditional_input
    return (_inputs(x_val, c_val, "validation_conditional_input"),)


def fit(model, x=None, validation_data=None, *, conditional_input=None,
        validation_conditional_input=None, flow_kwargs=None, objective=None, seed=0, epochs=1,
        batch_size=256, steps_per_epoch=None, learning_rate=1e-3, optimizer=None, clipnorm=None,
        jit_compile=False, steps_per_execution=1, init_rows=DEFAULT_INIT_ROWS, patience=None,
        restore_best_weights=True, checkpoint=None, callbacks=(), shuffle=True,
        validation_batch_size=None, terminate_on_nan=False, guard=True, verbose=0):
    """Builds, initialises from data, compiles and fits a flow; returns a `TrainResult`.

    Args:
      model: a `FlowModel`, a registered flow name (built with
        `FlowModel.from_flow(name, seed=seed, **flow_kwargs)` after the
        global seed is set) or a distribution (wrapped in a `FlowModel`).
      x: training data `[N, D]` (array), or None for objectives that need no
        data (`ReverseKL`; then `steps_per_epoch` is required).
      validation_data: `x_val`, `(x_val,)` or `(x_val, conditional_input_val)`.
      conditional_input: `[N, C]` condition of conditional flows, or None.
      validation_conditional_input: the validation condition (if not given in
        `validation_data`).
      flow_kwargs: keyword arguments of the flow builder (flow given by name).
      objective: `Objective`, name (`"nll"`, `"elbo"`, `"iwae"`), `"auto"`
        (`"elbo"` when the distribution has an `elbo` method), or None
        (keep the model's).
      seed: int: `keras.utils.set_random_seed(seed)` runs first (initial
        weights, minibatch order); also the `FlowModel`'s per-step seed base
        for a flow built here.
      epochs: as `keras.Model.fit` (likewise `batch_size`, `steps_per_epoch`,
        `shuffle`, `validation_batch_size`, `verbose`).
      learning_rate: float or `keras.optimizers.schedules.LearningRateSchedule`
        of the default optimiser, Adam (gradient norm clipped at `clipnorm`
        when given).
      optimizer: a Keras optimiser used instead of Adam (then `learning_rate`
        and `clipnorm` are not used; `clipnorm` with `optimizer` is an error).
      jit_compile: as `keras.Model.compile` (likewise `steps_per_execution`).
      init_rows: training rows for data-dependent initialisation (the first
        `init_rows`; default `DEFAULT_INIT_ROWS`), None for all of them, 0 for
        none. Runs once, before compile.
      patience: early stopping on `val_loss` after `patience` epochs without
        improvement (needs `validation_data`); None: train all epochs.
      restore_best_weights: with `patience`, end with the best epoch's weights.
      checkpoint: optional path `*.weights.h5`: the best weights (by
        `val_loss`, else `loss`) are saved there during training.
      callbacks: further Keras callbacks.
      terminate_on_nan: add `keras.callbacks.TerminateOnNaN` (stops without an
        error or a restore; the guard supersedes it).
      guard: True (default) puts a `tfp_flows.keras.GuardNonFinite` first in the
        callbacks (it scores the training data `x` in its diagnosis); a
        `GuardNonFinite` instance is used as given (e.g. `every=10`); False adds
        none. Its cost is one on-device copy of the weights and optimiser state
        and one loss read-back per step (docs/numerics.md, "Guarded training").

    Returns:
      A `TrainResult`.

    Raises:
      ValueError, TypeError: on invalid arguments (naming the argument).
      tfp_flows.keras.NonFiniteLossError: (with `guard`) the training loss
        became NaN or Inf; the model holds the weights from before that step.
    """
    epochs = validation.positive_int(epochs, "epochs")
    if not isinstance(guard, bool | guard_lib.GuardNonFinite):
        raise TypeError("`guard` must be True, False or a GuardNonFinite; got "
                        f"{type(guard).__name__}.")
    batch_size = validation.positive_int(batch_size, "batch_size")
    if steps_per_epoch is not None:
        steps_per_epoch = validation.positive_int(steps_per_epoch, "steps_per_epoch")
    if init_rows is not None:
        init_rows = validation.positive_int(init_rows, "init_rows", allow_zero=True)
    if patience is not None:
        patience = validation.positive_int(patience, "patience")
        if validation_data is None:
            raise ValueError("`patience` (early stopping on val_loss) needs `validation_data`; "
                             "got none.")
    if checkpoint is not None and not str(checkpoint).endswith(".weights.h5"):
        raise ValueError("`checkpoint` must be a path ending in '.weights.h5'; got "
                         f"{checkpoint!r}.")
    seed = validation.positive_int(seed, "seed", allow_zero=True)
    if optimizer is not None and clipnorm is not None:
        raise ValueError("`clipnorm` applies to the default Adam only; got an `optimizer` too "
                         "(set clipnorm on that optimizer).")

    keras.utils.set_random_seed(seed)
    model = build_model(model, flow_kwargs=flow_kwargs, objective=objective, seed=seed)
    if x is None and model.objective.needs_data:
        raise ValueError(f"`x` is required: {type(model.objective).__name__} trains from data.")
    if x is None and conditional_input is not None:
        raise ValueError("`conditional_input` needs data `x`; got x=None.")
    inputs = None if x is None else _inputs(x, conditional_input, "conditional_input")
    validation_data = _validation(validation_data, validation_conditional_input)

    if x is not None and init_rows != 0:
        n = len(x) if init_rows is None else min(init_rows, len(x))
        model.initialize_from_data(x[:n], None if conditional_input is None else
                                   tf.convert_to_tensor(conditional_input[:n],
                                                        model.distribution.dtype))

    if optimizer is None:
        adam = {} if clipnorm is None else {"clipnorm": clipnorm}
        optimizer = keras.optimizers.Adam(learning_rate, **adam)
    model.compile(optimizer, jit_compile=jit_compile, steps_per_execution=steps_per_execution)

    timer = _EpochTimer()
    all_callbacks = [timer]
    has_guard = any(isinstance(cb, guard_lib.GuardNonFinite) for cb in callbacks)
    if guard is not False and not has_guard:  # first: it must stop before a checkpoint saves
        all_callbacks.insert(0, guard_lib.GuardNonFinite() if guard is True else guard)
    if patience is not None:
        all_callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=patience, restore_best_weights=restore_best_weights))
    if checkpoint is not None:
        all_callbacks.append(keras.callbacks.ModelCheckpoint(
            str(checkpoint), monitor="val_loss" if validation_data else "loss",
            save_best_only=True, save_weights_only=True))
    if terminate_on_nan:
        all_callbacks.append(keras.callbacks.TerminateOnNaN())
    all_callbacks.extend(callbacks)

    fit_kwargs = {}
    if validation_data is not None:
        fit_kwargs.update(validation_data=validation_data,
                          validation_batch_size=validation_batch_size)
    if x is not None:
        fit_kwargs["shuffle"] = shuffle
    start = time.perf_counter()
    history = model.fit(inputs, batch_size=batch_size if x is not None else None, epochs=epochs,
                        steps_per_epoch=steps_per_epoch, callbacks=all_callbacks,
                        verbose=verbose, **fit_kwargs)
    seconds = time.perf_counter() - start
    hist = {k: [float(v) for v in values] for k, values in history.history.items()}
    monitored = hist.get("val_loss") or hist.get("loss") or []
    best = None
    if monitored:
        finite = np.where(np.isfinite(monitored), monitored, np.inf)
        best = int(np.argmin(finite)) + 1
    return TrainResult(model=model, history=hist, epoch_seconds=list(timer.times),
                       seconds=seconds, steps=int(model.optimizer.iterations.numpy()),
                       best_epoch=best)


def evaluate(model, x, conditional_input=None, *, num_samples=100, seed=0, batch_size=None,
             **log_prob_kwargs):
    """Mean negative log-likelihood (nats) of `x` and the declared kind of the log-density.

    `-tfp_flows.evaluation.mean_log_prob(...)`: exact flows give the exact NLL;
    importance-sampled families (augmentation, LGF) use `num_samples` samples
    (an estimate biased high, i.e. the log-likelihood biased low); stochastic
    estimates get the stateless seed `[seed, batch]`. Returns
    `Evaluation(nll, kind)`, which unpacks as `nll, kind = evaluate(...)`.
    """
    mean, kind = evaluation.mean_log_prob(model, x, num_samples=num_samples, seed=seed,
                                          batch_size=batch_size,
                                          conditional_input=conditional_input, **log_prob_kwargs)
    return Evaluation(-mean, kind)


def count_parameters(obj):
    """Number of trainable scalars of a Keras model/layer, a distribution, a module or weights.

    A distribution of this library counts the trainable weights of the Keras
    layers it holds (`FlowModel` counts the same); a `tf.Module` its
    `trainable_variables`; a list of variables their sizes. Shared variables
    count once.
    """
    if isinstance(obj, keras.layers.Layer):
        weights = obj.trainable_weights
    elif isinstance(obj, list | tuple):
        weights = obj
    elif hasattr(obj, "log_prob") or hasattr(obj, "forward"):
        weights = [w for layer in keras_owned.find_keras_layers(obj)
                   for w in layer.trainable_weights]
        if not weights and isinstance(obj, tf.Module):
            weights = obj.trainable_variables
    elif isinstance(obj, tf.Module):
        weights = obj.trainable_variables
    else:
        raise TypeError("`obj` must be a Keras model or layer, a distribution, a tf.Module or "
                        f"a list of variables; got {type(obj).__name__}.")
    seen, total = set(), 0
    for w in weights:
        if id(w) in seen:
            continue
        seen.add(id(w))
        total += int(np.prod(w.shape))
    return total
