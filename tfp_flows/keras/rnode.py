"""`RNODE`: maximum likelihood for FFJORD flows, with probe seeds and RNODE regularisers."""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_flows.bijectors.ffjord import FFJORD
from tfp_flows.internal import contract, tfp_compat
from tfp_flows.keras import objectives


def _check_weight(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a non-negative number; got {value!r}.")
    if not value >= 0:
        raise ValueError(f"`{name}` must be a non-negative number; got {value}.")
    return float(value)


@objectives._register  # pylint: disable=protected-access
class RNODE(objectives.Objective):
    """Log-likelihood of a flow with FFJORD blocks, plus the RNODE penalty in training.

    Score: `log p(x)` of a `TransformedDistribution` whose bijector is an
    `FFJORD` or a chain containing some; every FFJORD block solves its ODE
    once, with its own stateless seed split from `FlowModel`'s per-step seed
    (fresh Hutchinson probes every step and every replica). In training, and
    only there, it also returns the penalty (Finlay et al., 2020)

        kinetic_weight * mean_batch int ||f||^2 dt
          + jacobian_weight * mean_batch int ||df/dz||_F^2 dt,

    summed over blocks, which `FlowModel` adds to the loss. The Frobenius term
    reuses the trace's probes (exact with the exact trace). The regularisers
    straighten trajectories, so the adaptive solver needs fewer steps.
    With both weights 0 this is maximum likelihood with per-step seeds.

    Args:
      kinetic_weight: weight of the kinetic energy (>= 0).
      jacobian_weight: weight of the Jacobian Frobenius norm (>= 0).

    #### Examples

    ```python
    model = tfp_flows.keras.FlowModel.from_flow(
        "ffjord", event_size=2, trace="hutchinson",
        objective=tfp_flows.keras.RNODE(kinetic_weight=0.01, jacobian_weight=0.01))
    ```
    """

    def __init__(self, kinetic_weight=0.0, jacobian_weight=0.0):
        self.kinetic_weight = _check_weight(kinetic_weight, "kinetic_weight")
        self.jacobian_weight = _check_weight(jacobian_weight, "jacobian_weight")

    def __call__(self, distribution, x, *, conditional_input=None, seed=None, training=False):
        if not isinstance(distribution, tfp_compat.TRANSFORMED_TYPES):
            raise TypeError("RNODE needs a TransformedDistribution of FFJORD blocks; "
                            f"got {type(distribution).__name__}.")
        parts = contract.chain_members(distribution.bijector)
        if not any(isinstance(b, FFJORD) for b in parts):
            raise TypeError("RNODE needs at least one FFJORD bijector in the flow; got none.")
        regularize = training and (self.kinetic_weight > 0 or self.jacobian_weight > 0)
        # One seed per part and one for the base, so every stochastic estimate has its own.
        seeds = ([None] * (len(parts) + 1) if seed is None
                 else tfp.random.split_seed(seed, n=len(parts) + 1, salt="rnode"))
        h = tf.convert_to_tensor(x, distribution.dtype)
        log_det, penalty = 0.0, 0.0
        for bijector, part_seed in zip(parts, seeds[:-1], strict=True):
            if isinstance(bijector, FFJORD):
                kwargs = contract.route(bijector, conditional_input)
                sol = bijector.solve(h, "inverse", seed=part_seed, regularize=regularize,
                                     **kwargs)
                h, log_det = sol.state, log_det + sol.log_det
                if regularize:
                    penalty += (self.kinetic_weight * tf.reduce_mean(sol.kinetic)
                                + self.jacobian_weight * tf.reduce_mean(sol.jacobian_frobenius))
            else:
                kwargs = contract.route(bijector, conditional_input, part_seed)
                h_next = bijector.inverse(h, **kwargs)
                log_det += bijector.inverse_log_det_jacobian(h, event_ndims=1, **kwargs)
                h = h_next
        score = contract.log_prob(distribution.distribution, h, conditional_input,
                                  seed=seeds[-1]) + log_det
        return (score, penalty) if regularize else score

    def get_config(self):
        """Constructor arguments (Keras serialisation)."""
        return {"kinetic_weight": self.kinetic_weight, "jacobian_weight": self.jacobian_weight}
