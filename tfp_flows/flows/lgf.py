"""Ready-made localised generative flows: LGF-MAF and LGF-RealNVP (Cornish et al., 2019).

Each is its base flow with a continuously indexed layer inserted after every
MADE / affine coupling layer, and no batch norm (the paper omits it: `G`'s
`s(u) * . + t(u)` already generalises it). Both return a
`tfp_flows.distributions.LGF`, trained on its ELBO
(`FlowModel.from_flow("lgf_maf", ..., objective="elbo")`); `log_prob` is the
importance-sampled estimate with S = `num_importance_samples` (1000, as in
the paper).
"""

import tensorflow_probability as tfp

from tfp_flows.bijectors.conditioners import AffineCouplingConditioner, MADEConditioner
from tfp_flows.bijectors.continuously_indexed import ContinuouslyIndexed
from tfp_flows.bijectors.permute import block_permutations, reverse_permutation
from tfp_flows.distributions.lgf import LGF
from tfp_flows.flows.baselines import standard_normal
from tfp_flows.flows.registry import register_flow
from tfp_flows.internal import validation
from tfp_flows.internal.contract import mark_conditional

tfb = tfp.bijectors


def _common(event_size, num_layers, index_size, dtype, coupling):
    event_size = validation.positive_int(event_size, "event_size")
    num_layers = validation.positive_int(num_layers, "num_layers")
    if coupling and event_size < 2:
        raise ValueError(f"Coupling flows need `event_size` >= 2; got {event_size}.")
    index_size = event_size if index_size is None else validation.positive_int(
        index_size, "index_size")
    return event_size, num_layers, index_size, validation.float_dtype(dtype)


def _stack(layers, event_size, index_size, dtype, base, **lgf_kwargs):
    base = standard_normal(event_size, dtype) if base is None else base
    return LGF(layers, index_size, base=base, event_size=event_size, dtype=dtype, **lgf_kwargs)


@register_flow("lgf_maf")
def lgf_maf(event_size, num_layers=5, index_size=None, hidden_units=(50, 50),
            st_hidden_units=(10, 10), prior_hidden_units=(50, 50),
            posterior_hidden_units=(50, 50), activation="relu", log_scale_bound=3.0,
            dirac=False, num_importance_samples=1000, dtype="float32", base=None):
    """LGF-MAF: per layer, `G_l(x; u) = s_l(u) * MADE_l(x) + t_l(u)`, orders reversed between.

    `index_size` (U) defaults to `event_size`. `st_hidden_units` sizes the
    `s`/`t` MLP, `prior_hidden_units` / `posterior_hidden_units` the MLPs of
    `p(u | z)` and `q(u | z)` (the paper's 2-D runs: 2x50 MADEs, 2x10 s/t,
    4x50 p and q). `dirac=True` gives the plain MAF with an extra learned
    elementwise affine map per layer (exact log-density).

    #### Examples

    ```python
    model = FlowModel.from_flow("lgf_maf", event_size=2, objective="elbo")
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(x_train, batch_size=256, epochs=10)
    log_p = model.distribution.log_prob(x_test, num_samples=1000, seed=(0, 1))
    ```
    """
    event_size, num_layers, index_size, dtype = _common(event_size, num_layers, index_size,
                                                        dtype, coupling=False)
    layers = []
    for i in range(num_layers):
        cond = MADEConditioner(event_size, hidden_units, activation,
                               log_scale_bound=log_scale_bound, dtype=dtype.name)
        made = tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=cond, name=f"maf_{i}")
        g = tfb.Chain([reverse_permutation(event_size), made]) if i > 0 else made
        layers.append(ContinuouslyIndexed(event_size, index_size, bijector=g,
                                          hidden_units=st_hidden_units, activation=activation,
                                          log_scale_bound=log_scale_bound, dtype=dtype,
                                          name=f"lgf_layer_{i}"))
    return _stack(layers, event_size, index_size, dtype, base,
                  prior_hidden_units=prior_hidden_units,
                  posterior_hidden_units=posterior_hidden_units, activation=activation,
                  dirac=dirac, num_importance_samples=num_importance_samples)


@register_flow("lgf_real_nvp")
def lgf_real_nvp(event_size, num_layers=4, index_size=None, index_mode="affine",
                 hidden_units=(64, 64), st_hidden_units=(10, 10), prior_hidden_units=(50, 50),
                 posterior_hidden_units=(50, 50), activation="relu", log_scale_bound=3.0,
                 dirac=False, num_importance_samples=1000, seed=0, dtype="float32", base=None):
    """LGF-RealNVP: affine couplings (permutations as in `flows.real_nvp`) indexed by `u`.

    `index_mode="affine"`: `G_l(x; u) = s_l(u) * coupling_l(x) + t_l(u)`.
    `index_mode="coupling"`: the paper's alternative, `u` concatenated to the
    input of each coupling's conditioner network (`G_l(.; u)` is the coupling
    whose shift and log-scale are functions of `(x_masked, u)`; no `s`, `t`).

    #### Examples

    ```python
    lgf = lgf_real_nvp(event_size=2, num_layers=4, index_mode="coupling")
    elbo = lgf.elbo(x, seed=(0, 1))
    ```
    """
    validation.one_of(index_mode, "index_mode", ("affine", "coupling"))
    event_size, num_layers, index_size, dtype = _common(event_size, num_layers, index_size,
                                                        dtype, coupling=True)
    perms = block_permutations(event_size, (num_layers + 1) // 2, seed)
    num_masked = event_size // 2
    layers = []
    for i in range(num_layers):
        conditional_size = index_size if index_mode == "coupling" else 0
        cond = AffineCouplingConditioner(num_masked, event_size - num_masked,
                                         hidden_units=hidden_units, activation=activation,
                                         conditional_size=conditional_size,
                                         log_scale_bound=log_scale_bound, dtype=dtype.name)
        coupling = tfb.RealNVP(num_masked=num_masked, shift_and_log_scale_fn=cond,
                               name=f"coupling_{i}")
        if index_mode == "coupling":
            layers.append(tfb.Chain([perms[i], mark_conditional(coupling, index_size)],
                                    name=f"lgf_layer_{i}"))
        else:
            layers.append(ContinuouslyIndexed(event_size, index_size,
                                              bijector=tfb.Chain([perms[i], coupling]),
                                              hidden_units=st_hidden_units,
                                              activation=activation,
                                              log_scale_bound=log_scale_bound, dtype=dtype,
                                              name=f"lgf_layer_{i}"))
    return _stack(layers, event_size, index_size, dtype, base,
                  prior_hidden_units=prior_hidden_units,
                  posterior_hidden_units=posterior_hidden_units, activation=activation,
                  dirac=dirac, num_importance_samples=num_importance_samples)

