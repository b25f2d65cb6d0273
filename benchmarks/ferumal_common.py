"""Shared training loop of the Ferumal-flow benchmarks (English et al., 2024).

Every model is a registered flow trained by the library's pipeline
(`tfp_flows.keras.train.fit`: data-dependent initialisation, then `model.fit`)
with Adam and a decayed learning rate (cosine by default, or StepLR); with a
patience, the best validation epoch is restored (early stopping), for every
model alike.
"""
# ruff: noqa: I001  (benchmarks.common must set the TF environment before TF is imported)

from benchmarks import common  # noqa: F401  (sets the Keras backend first)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfp_flows.keras.train import fit  # noqa: E402


def train(flow, flow_kwargs, x_train, x_val, steps, batch_size, lr, patience=None, seed=0,
          jit_compile=False, steps_per_execution=1, validation_batch_size=None):
    """Builds, initialises and trains a registered flow; returns (model, seconds, epochs run).

    `jit_compile` and `steps_per_execution` go to `model.compile` (XLA, and
    several optimizer steps per call into the compiled graph);
    `validation_batch_size` to `model.fit`. The seconds include tracing and
    compilation.
    """
    result = train_result(flow, flow_kwargs, x_train, x_val, steps, batch_size, lr,
                          patience=patience, seed=seed, jit_compile=jit_compile,
                          steps_per_execution=steps_per_execution,
                          validation_batch_size=validation_batch_size)
    return result.model, result.seconds, result.epochs_run


SCHEDULES = ("cosine", "step")
STEP_DECAY_RATE = 0.5
"""StepLR: the learning rate is multiplied by this every quarter of the run."""


def learning_rate_schedule(lr, total_steps, schedule="cosine"):
    """The decayed learning rate of `train_result` over `total_steps` optimiser steps.

    `"cosine"`: cosine decay from `lr` to `0.05 lr`
    (`keras.optimizers.schedules.CosineDecay`, `alpha=0.05`). `"step"` (PyTorch's
    StepLR): `lr * STEP_DECAY_RATE ** floor(step / (total_steps / 4))`, i.e. halved
    after each quarter of the run, ending at `lr / 8`.
    """
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(lr, total_steps, alpha=0.05)
    if schedule == "step":
        return keras.optimizers.schedules.ExponentialDecay(
            lr, max(1, total_steps // 4), STEP_DECAY_RATE, staircase=True)
    raise ValueError(f"`schedule` must be one of {SCHEDULES}; got {schedule!r}.")


def train_result(flow, flow_kwargs, x_train, x_val, steps, batch_size, lr, patience=None, seed=0,
                 jit_compile=False, steps_per_execution=1, validation_batch_size=None,
                 eval_every=None, objective=None, callbacks=(), schedule="cosine",
                 beta_1=0.9, beta_2=0.999):
    """As `train`, returning the whole `tfp_flows.keras.train.TrainResult`.

    With `eval_every` (steps), an "epoch" is `eval_every` optimiser steps
    (`steps_per_epoch`: consecutive chunks continue one shuffled pass over
    `x_train`, a new pass starting when it is used up; use it only with
    `eval_every` at most one pass), so the validation NLL is measured every
    `eval_every` steps; otherwise an epoch is a full pass over `x_train`.
    `objective` goes to `fit` (None: maximum likelihood), `callbacks` too.
    `schedule` (`"cosine"` or `"step"`, see `learning_rate_schedule`) decays
    `lr`; `beta_1`, `beta_2` are Adam's.
    """
    steps_per_epoch = eval_every or max(1, int(np.ceil(len(x_train) / batch_size)))
    epochs = max(1, int(np.ceil(steps / steps_per_epoch)))
    rate = learning_rate_schedule(lr, epochs * steps_per_epoch, schedule)
    optimizer = keras.optimizers.Adam(rate, beta_1=beta_1, beta_2=beta_2)
    return fit(flow, x_train, x_val, flow_kwargs=flow_kwargs, seed=seed, objective=objective,
               optimizer=optimizer, batch_size=batch_size, epochs=epochs,
               steps_per_epoch=eval_every, jit_compile=jit_compile,
               steps_per_execution=steps_per_execution,
               validation_batch_size=validation_batch_size, patience=patience,
               callbacks=list(callbacks))
