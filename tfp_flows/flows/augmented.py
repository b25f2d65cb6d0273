"""Ready-made augmented (marginalising) flows, registered for `FlowModel.from_flow`.

* `augmented_real_nvp`: `distributions.Augmented` around `flows.real_nvp` on
  `R^{D+B}`.
* `marginalizing_flow`: the same wrapper around the thesis' RealNVP
  (`rblock_real_nvp`; de Boer, 2020, Sec. 2.1), the architecture of its
  Tables 2-3.

Both take `proposal='standard_normal'` (the thesis' N(0, I)) or `'gaussian'`
(a learned `q(eps | x, c)` from an MLP, started at N(0, I)), and
`conditional_size=C` for a conditional density `p(x | c)`: the flow is then
`p_T(x, eps | c)` (every coupling conditioner sees `c`) and a learned proposal
sees `c` too. The flow lives on `D + B` dimensions, so a scalar target
(`event_size=1`) works with any `num_augment >= 1`.

#### References

[1] Stijn de Boer. Marginalizing Flows. BSc thesis (Artificial Intelligence),
    Radboud University Nijmegen, 2020.
"""

import tensorflow as tf

from tfp_flows.bijectors.actnorm import ActNorm
from tfp_flows.bijectors.coupling import check_coupling_event_size, coupling_layer
from tfp_flows.bijectors.permute import random_permutation, reverse_permutation
from tfp_flows.distributions.augmented import DEFAULT_NUM_SAMPLES, Augmented
from tfp_flows.distributions.proposals import make_proposal
from tfp_flows.flows.baselines import real_nvp, transformed
from tfp_flows.flows.registry import register_flow
from tfp_flows.internal import validation


def rblock_real_nvp(event_size, num_blocks=4, hidden_units=(64, 64), activation="relu",
                    residual=False, log_scale_bound=3.0, seed=0, dtype="float32",
                    conditional_size=0):
    """The thesis' RealNVP on `R^event_size`: "1 coupling, 4 R-blocks" (de Boer, 2020, 2.1).

    In the density direction: ActNorm, one affine coupling, a reversal, then
    `num_blocks` R-blocks `[coupling, reversal, coupling, random shuffle,
    ActNorm]`, the last one without its shuffle and ActNorm (the thesis drops
    them because no coupling follows). Couplings keep the first
    `event_size // 2` coordinates and transform the rest, with shift and
    log-scale from an MLP (soft-clamped log-scale). The thesis does not give
    the MLP sizes; `hidden_units` is our choice. ActNorms are set by
    data-dependent initialisation (`FlowModel.initialize_from_data`). With
    `conditional_size=C` every coupling conditioner also sees `c` (built by
    `bijectors.coupling.coupling_layer`).
    """
    event_size, conditional_size = check_coupling_event_size(event_size, conditional_size)
    num_blocks = validation.positive_int(num_blocks, "num_blocks")
    dtype = validation.float_dtype(dtype)

    def coupling(name):
        return coupling_layer(event_size, "affine", conditional_size, name,
                              hidden_units=hidden_units, activation=activation,
                              residual=residual, log_scale_bound=log_scale_bound,
                              dtype=dtype.name)

    bijectors = [ActNorm(event_size, dtype=dtype, name="act_norm_0"),
                 coupling("coupling_0"), reverse_permutation(event_size)]
    for i in range(num_blocks):
        bijectors += [coupling(f"coupling_{i}_a"), reverse_permutation(event_size),
                      coupling(f"coupling_{i}_b")]
        if i < num_blocks - 1:
            bijectors += [random_permutation(event_size, seed + i),
                          ActNorm(event_size, dtype=dtype, name=f"act_norm_{i + 1}")]
    return transformed(bijectors, event_size, dtype)


def _wrap(flow, event_size, num_augment, proposal, proposal_kwargs, num_samples, dtype,
          conditional_size):
    proposal_obj = None
    if num_augment > 0:
        proposal_obj = make_proposal(proposal, event_size, num_augment, dtype=dtype,
                                     conditional_size=conditional_size,
                                     **dict(proposal_kwargs or {}))
    return Augmented(flow, event_size, num_augment, proposal=proposal_obj,
                     num_samples=num_samples, conditional_size=conditional_size)


def _check(event_size, num_augment, proposal, conditional_size):
    event_size = validation.positive_int(event_size, "event_size")
    num_augment = validation.positive_int(num_augment, "num_augment", allow_zero=True)
    validation.one_of(proposal, "proposal", ("standard_normal", "gaussian"))
    conditional_size = validation.positive_int(conditional_size, "conditional_size",
                                               allow_zero=True)
    return event_size, num_augment, conditional_size


@register_flow("augmented_real_nvp")
def augmented_real_nvp(event_size, num_augment=2, proposal="standard_normal",
                       proposal_kwargs=None, num_samples=DEFAULT_NUM_SAMPLES, dtype="float32",
                       conditional_size=0, **flow_kwargs):
    """`Augmented(real_nvp(event_size + num_augment, **flow_kwargs), ...)` on `R^event_size`.

    `log_prob` is an importance-sampled estimate (biased low, consistent in
    `num_samples`); train with `objective='elbo'` or `'iwae'`.

    #### Examples

    ```python
    model = tfp_flows.keras.FlowModel.from_flow(
        "augmented_real_nvp", objective="elbo", event_size=2, num_augment=2,
        proposal="gaussian", num_layers=4)
    model.compile(keras.optimizers.Adam(1e-3), jit_compile=True)
    model.fit(x, batch_size=256, epochs=50)
    ```
    """
    event_size, num_augment, conditional_size = _check(event_size, num_augment, proposal,
                                                       conditional_size)
    flow = real_nvp(event_size + num_augment, dtype=dtype, conditional_size=conditional_size,
                    **flow_kwargs)
    return _wrap(flow, event_size, num_augment, proposal, proposal_kwargs, num_samples,
                 tf.as_dtype(dtype), conditional_size)


@register_flow("marginalizing_flow")
def marginalizing_flow(event_size, num_augment=2, proposal="standard_normal",
                       proposal_kwargs=None, num_samples=DEFAULT_NUM_SAMPLES, dtype="float32",
                       conditional_size=0, **flow_kwargs):
    """de Boer's marginalizing flow: `Augmented` around `rblock_real_nvp` on `R^{D+B}`.

    `flow_kwargs` go to `rblock_real_nvp` (`num_blocks`, `hidden_units`, ...).
    With `num_augment=0` it is the plain normalising flow (exact `log_prob`).
    """
    event_size, num_augment, conditional_size = _check(event_size, num_augment, proposal,
                                                       conditional_size)
    flow = rblock_real_nvp(event_size + num_augment, dtype=dtype,
                           conditional_size=conditional_size, **flow_kwargs)
    return _wrap(flow, event_size, num_augment, proposal, proposal_kwargs, num_samples,
                 tf.as_dtype(dtype), conditional_size)
