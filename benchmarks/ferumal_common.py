"""Shared training loop of the Ferumal-flow benchmarks (seed 000).

Every model is a `FlowModel.from_flow(...)` trained by `model.fit` with Adam and
a cosine-decayed learning rate; the best validation epoch is restored (early
stopping), for every model alike.
"""
# ruff: noqa: I001  (benchmarks.common must set the TF environment before TF is imported)

import time

from benchmarks import common  # noqa: F401  (sets the Keras backend first)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfp_flows.keras import FlowModel  # noqa: E402


def train(flow, flow_kwargs, x_train, x_val, steps, batch_size, lr, patience=None, seed=0,
          jit_compile=False, steps_per_execution=1, validation_batch_size=None):
    """Builds, initialises and trains a registered flow; returns (model, seconds, epochs run).

    `jit_compile` and `steps_per_execution` go to `model.compile` (XLA, and
    several optimizer steps per call into the compiled graph);
    `validation_batch_size` to `model.fit`. The seconds include tracing and
    compilation.
    """
    keras.utils.set_random_seed(seed)
    model = FlowModel.from_flow(flow, seed=seed, **flow_kwargs)
    # Data-dependent init (ActNorm, inducing points, length scales) from the training data.
    model.initialize_from_data(x_train[:2000])
    steps_per_epoch = max(1, int(np.ceil(len(x_train) / batch_size)))
    epochs = max(1, int(np.ceil(steps / steps_per_epoch)))
    schedule = keras.optimizers.schedules.CosineDecay(lr, epochs * steps_per_epoch, alpha=0.05)
    model.compile(keras.optimizers.Adam(schedule), jit_compile=jit_compile,
                  steps_per_execution=steps_per_execution)
    callbacks = []
    if patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=patience, restore_best_weights=True))
    start = time.perf_counter()
    hist = model.fit(x_train, batch_size=batch_size, epochs=epochs, verbose=0, shuffle=True,
                     validation_data=(x_val,), validation_batch_size=validation_batch_size,
                     callbacks=callbacks)
    seconds = time.perf_counter() - start
    return model, seconds, len(hist.history["loss"])


def nll(model, x):
    """Mean test NLL in nats (exact log-density for every flow here)."""
    return common.mean_nll(lambda t: model.log_prob(t), x.astype(np.float32))
