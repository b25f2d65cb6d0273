"""Ready-made localised generative flows: LGF-MAF and LGF-RealNVP (Cornish et al., 2019).

Each is its base flow with a continuously indexed layer inserted after every
MADE / affine coupling layer, and no batch norm (the paper omits it: `G`'s
`s(u) * . + t(u)` already generalises it). Both return a
`tfp_flows.distributions.LGF`, trained on its ELBO
(`FlowModel.from_flow("lgf_maf", ..., objective="elbo")`); `log_prob` is the
importance-sampled estimate with S = `num_importance_samples` (1000, as in
the paper).

`conditional_size=C` builds a conditional density `p(x | c)`: each layer's
conditional input is `[u_l, c]` (the `s`/`t` MLP sees it and the inner flow
`g` is conditional on `c`; in LGF-RealNVP's coupling mode the coupling
conditioner sees `[x_masked, u, c]`), and the prior `p(u_l | z, c)` and
posterior `q(u_l | z, c)` see `c`. LGF-MAF works for a scalar target
(`event_size=1`): its MADE then depends on `c` only.

#### References

[1] Rob Cornish, Anthony Caterini, George Deligiannidis, Arnaud Doucet.
    Localised Generative Flows. arXiv:1909.13833, 2019. Published as
    "Relaxing Bijectivity Constraints with Continuously Indexed Normalising
    Flows", ICML 2020.
"""

import tensorflow_probability as tfp

from tfp_flows.bijectors.conditioners import MADEConditioner
from tfp_flows.bijectors.continuously_indexed import ContinuouslyIndexed
from tfp_flows.bijectors.coupling import check_coupling_event_size, coupling_layer
from tfp_flows.bijectors.one_pass import OnePassMaskedAutoregressiveFlow
from tfp_flows.bijectors.permute import block_permutations, reverse_permutation
from tfp_flows.distributions.lgf import LGF
from tfp_flows.flows.baselines import standard_normal
from tfp_flows.flows.registry import register_flow
from tfp_flows.internal import validation
from tfp_flows.internal.contract import mark_conditional

tfb = tfp.bijectors


def _common(event_size, num_layers, index_size, dtype, coupling, conditional_size):
    event_size = validation.positive_int(event_size, "event_size")
    num_layers = validation.positive_int(num_layers, "num_layers")
    if coupling:
        check_coupling_event_size(event_size, conditional_size)
    index_size = event_size if index_size is None else validation.positive_int(
        index_size, "index_size")
    conditional_size = validation.positive_int(conditional_size, "conditional_size",
                                               allow_zero=True)
    return event_size, num_layers, index_size, validation.float_dtype(dtype), conditional_size


def _indexed(g, i, event_size, index_size, dtype, conditional_size, options):
    """Layer `i`: `ContinuouslyIndexed(g)` with the builder's `s`/`t` options."""
    return ContinuouslyIndexed(event_size, index_size, bijector=g,
                               hidden_units=options["st_hidden_units"],
                               activation=options["activation"],
                               log_scale_bound=options["log_scale_bound"], dtype=dtype,
                               conditional_size=conditional_size, name=f"lgf_layer_{i}")


def _stack(layers, event_size, index_size, dtype, conditional_size, options):
    """The `LGF` of `layers`, with the builder's base, prior/posterior and sampling options."""
    base = options["base"]
    base = standard_normal(event_size, dtype) if base is None else base
    keys = ("prior_hidden_units", "posterior_hidden_units", "activation", "dirac",
            "num_importance_samples")
    return LGF(layers, index_size, base=base, event_size=event_size, dtype=dtype,
               conditional_size=conditional_size, **{k: options[k] for k in keys})


@register_flow("lgf_maf")
def lgf_maf(event_size, num_layers=5, index_size=None, hidden_units=(50, 50),
            st_hidden_units=(10, 10), prior_hidden_units=(50, 50),
            posterior_hidden_units=(50, 50), activation="relu", log_scale_bound=3.0,
            dirac=False, num_importance_samples=1000, dtype="float32", base=None,
            conditional_size=0):
    """LGF-MAF: per layer, `G_l(x; u) = s_l(u) * MADE_l(x) + t_l(u)`, orders reversed between.

    `index_size` (U) defaults to `event_size`. `st_hidden_units` sizes the
    `s`/`t` MLP, `prior_hidden_units` / `posterior_hidden_units` the MLPs of
    `p(u | z)` and `q(u | z)` (the paper's 2-D runs: 2x50 MADEs, 2x10 s/t,
    4x50 p and q). `dirac=True` gives the plain MAF with an extra learned
    elementwise affine map per layer (exact log-density). `conditional_size=C`:
    `p(x | c)`, every MADE, `s`/`t` MLP, prior and posterior sees `c`.

    #### Examples

    ```python
    model = FlowModel.from_flow("lgf_maf", event_size=2, objective="elbo")
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(x_train, batch_size=256, epochs=10)
    log_p = model.distribution.log_prob(x_test, num_samples=1000, seed=(0, 1))
    ```
    """
    options = dict(locals())
    event_size, num_layers, index_size, dtype, conditional_size = _common(
        event_size, num_layers, index_size, dtype, False, conditional_size)
    sizes = (event_size, index_size, dtype, conditional_size)
    layers = []
    for i in range(num_layers):
        cond = MADEConditioner(event_size, hidden_units, activation, conditional_size,
                               log_scale_bound=log_scale_bound, dtype=dtype.name)
        made = OnePassMaskedAutoregressiveFlow(shift_and_log_scale_fn=cond, name=f"maf_{i}")
        if conditional_size:
            made = mark_conditional(made, conditional_size)
        g = tfb.Chain([reverse_permutation(event_size), made]) if i > 0 else made
        layers.append(_indexed(g, i, *sizes, options))
    return _stack(layers, *sizes, options)


@register_flow("lgf_real_nvp")
def lgf_real_nvp(event_size, num_layers=4, index_size=None, index_mode="affine",
                 hidden_units=(64, 64), st_hidden_units=(10, 10), prior_hidden_units=(50, 50),
                 posterior_hidden_units=(50, 50), activation="relu", log_scale_bound=3.0,
                 dirac=False, num_importance_samples=1000, seed=0, dtype="float32", base=None,
                 conditional_size=0):
    """LGF-RealNVP: affine couplings (permutations as in `flows.real_nvp`) indexed by `u`.

    `index_mode="affine"`: `G_l(x; u) = s_l(u) * coupling_l(x) + t_l(u)`.
    `index_mode="coupling"`: the paper's alternative, `u` concatenated to the
    input of each coupling's conditioner network (`G_l(.; u)` is the coupling
    whose shift and log-scale are functions of `(x_masked, u)`; no `s`, `t`).
    `conditional_size=C`: `p(x | c)`; in affine mode the coupling conditioner
    sees `(x_masked, c)` and `s`, `t` see `[u, c]`, in coupling mode it sees
    `(x_masked, u, c)`. Couplings come from `bijectors.coupling.coupling_layer`.

    #### Examples

    ```python
    lgf = lgf_real_nvp(event_size=2, num_layers=4, index_mode="coupling")
    elbo = lgf.elbo(x, seed=(0, 1))
    ```
    """
    options = dict(locals())
    validation.one_of(index_mode, "index_mode", ("affine", "coupling"))
    event_size, num_layers, index_size, dtype, conditional_size = _common(
        event_size, num_layers, index_size, dtype, True, conditional_size)
    sizes = (event_size, index_size, dtype, conditional_size)
    perms = block_permutations(event_size, (num_layers + 1) // 2, seed)
    layers = []
    for i in range(num_layers):
        # The coupling sees [u, c] in coupling mode, c alone in affine mode.
        coupling = coupling_layer(
            event_size, "affine",
            index_size + conditional_size if index_mode == "coupling" else conditional_size,
            f"coupling_{i}", hidden_units=hidden_units, activation=activation,
            log_scale_bound=log_scale_bound, dtype=dtype.name)
        if index_mode == "coupling":
            layers.append(tfb.Chain([perms[i], coupling], name=f"lgf_layer_{i}"))
        else:
            layers.append(_indexed(tfb.Chain([perms[i], coupling]), i, *sizes, options))
    return _stack(layers, *sizes, options)
