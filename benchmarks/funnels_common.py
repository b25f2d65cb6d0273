"""Shared training loop of the funnel benchmarks (seed 001).

`fit_flow` builds a registered flow by name, initialises it from data
(ActNorm), trains it by maximum likelihood with `FlowModel.fit` and returns
the model with the weights of the epoch with the best validation NLL
(early stopping on the validation split, never on the test split).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from tfp_flows.keras import FlowModel  # noqa: E402

LN2 = float(np.log(2.0))


def fit_flow(flow, train, validation, epochs, batch_size=128, learning_rate=1e-3, seed=0,
             jit_compile=False, **flow_kwargs):
    """Trains flow `flow`; returns `(model, seconds)` with the best-validation weights."""
    keras.utils.set_random_seed(seed)
    model = FlowModel.from_flow(flow, seed=seed, **flow_kwargs)
    model.compile(keras.optimizers.Adam(learning_rate, clipnorm=5.0), jit_compile=jit_compile)
    model.initialize_from_data(train[:1024])
    stop = keras.callbacks.EarlyStopping(patience=max(3, epochs // 5),
                                         restore_best_weights=True)
    start = time.perf_counter()
    model.fit(train, batch_size=batch_size, epochs=epochs, validation_data=(validation,),
              callbacks=[stop], verbose=0)
    return model, time.perf_counter() - start


def test_nll(model, x):
    """Mean test NLL in nats (finite values only would hide failures, so all are used)."""
    return common.mean_nll(model.log_prob, x, batch_size=500)


def bits_per_dim(nll, dim):
    return nll / (dim * LN2)
