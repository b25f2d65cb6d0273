"""Ferumal flow (English, Kirchler & Lippert, ICLR 2024): kernelised RealNVP blocks.

Chain, density direction, per block b = 1..B:

    ActNorm -> fixed random permutation -> KernelCoupling
            -> reversal                 -> KernelCoupling

(`tfp_flows.bijectors.block_permutations`), then a standard normal base. The
log-density is exact.

#### Parameter count

With `L = 2B` couplings, `d = D // 2`, `c = conditional_size` and N inducing
points, every coupling has `A_s, A_t in R^{(D-d) x N}`; the points live in
`R^{d + c}`. Trainable parameters (`ferumal_num_params`):

| `inducing` | kernel machines | points | length scales | ActNorm |
|---|---|---|---|---|
| `"per_layer"` | `2 N (D-d) L` | `(d+c) N L` | `L` (if learned) | `2 D B` |
| `"shared"` | `2 N (D-d) L` | `(d+c) N` | `L` (if learned) | `2 D B` |
| `"representer"` (N = n) | `2 n (D-d) L` | 0 (frozen data) | `L` (if learned) | `2 D B` |

The paper (section 3) writes `2 L n (D-d)` for the representer form (matches
the first column), `2 N L` for per-layer points (which drops the `(D-d)`
factor and the points themselves) and `2 N (D-d) L + 2 d N` for shared points
(one `d x N` set of points for s and one for t; here s and t share one set,
one kernel evaluation serves both, so the points count `d N`). The paper's counts leave out
ActNorm and the length scale, which it tuned by grid search.
"""

from tfp_flows.bijectors.actnorm import ActNorm
from tfp_flows.bijectors.coupling import check_coupling_event_size
from tfp_flows.bijectors.kernel_coupling import KernelCoupling
from tfp_flows.bijectors.permute import block_permutations
from tfp_flows.flows.baselines import transformed
from tfp_flows.flows.registry import register_flow
from tfp_flows.internal import validation
from tfp_flows.nets.kernels import InducingPoints, canonical_kernel

INDUCING_MODES = ("per_layer", "shared", "representer")


def ferumal_num_params(event_size, num_blocks=2, num_inducing=32, inducing="per_layer",
                       learn_length_scale=True, conditional_size=0):
    """Trainable parameter count of `ferumal(...)` (see the module docstring's table)."""
    event_size = validation.positive_int(event_size, "event_size")
    num_blocks = validation.positive_int(num_blocks, "num_blocks")
    num_inducing = validation.positive_int(num_inducing, "num_inducing")
    inducing = validation.one_of(inducing, "inducing", INDUCING_MODES)
    d = event_size // 2
    p = d + validation.positive_int(conditional_size, "conditional_size", allow_zero=True)
    num_layers = 2 * num_blocks
    count = 2 * num_inducing * (event_size - d) * num_layers + 2 * event_size * num_blocks
    count += num_layers if learn_length_scale else 0
    if inducing == "per_layer":
        count += p * num_inducing * num_layers
    elif inducing == "shared":
        count += p * num_inducing
    return count


@register_flow("ferumal")
def ferumal(event_size, num_blocks=2, num_inducing=32, kernel="squared_exponential",
            inducing="per_layer", length_scale=None, learn_length_scale=True,
            log_scale_bound=3.0, conditional_size=0, seed=0, dtype="float32", base=None):
    """Ferumal flow: `num_blocks` blocks of ActNorm and two `KernelCoupling`s.

    Call `tfp_flows.bijectors.initialize_from_data(flow, x)` (or
    `FlowModel.initialize_from_data`) before training: it sets ActNorm's
    statistics, the inducing points (a random subset of the data as it
    arrives at each coupling) and the median-heuristic length scales.

    #### Examples

    ```python
    flow = tfp_flows.flows.ferumal(event_size=2, num_blocks=4, num_inducing=20)
    model = tfp_flows.keras.FlowModel.from_flow(
        "ferumal", event_size=2, num_blocks=4, num_inducing=20, inducing="shared")
    model.initialize_from_data(x_train[:1000])
    model.compile(keras.optimizers.Adam(1e-2))
    model.fit(x_train, batch_size=200, epochs=10)
    ```

    Args:
      event_size: D >= 2, or 1 with `conditional_size > 0` (a scalar `p(y | c)`:
        the kernel machines see the condition only).
      num_blocks: B; the flow has `2B` couplings.
      num_inducing: N per coupling; for `inducing="representer"`, the number
        of training examples n (pass all of them to `initialize_from_data`).
      kernel: 'squared_exponential' ('se'), 'matern32' or 'matern52'.
      inducing: 'per_layer' (own learned points per coupling), 'shared' (one
        learned set for all couplings) or 'representer' (frozen, one point
        per training example).
      length_scale: fixed initial length scale, or None for the median heuristic.
      learn_length_scale: whether length scales are trained.
      log_scale_bound: soft clamp of each coupling's log-scale.
      conditional_size: size of an optional `conditional_input`.
      seed: seed of the permutations and the inducing-point initialisation.
      dtype: float32 or float64.
      base: base distribution (default standard normal).

    Returns:
      A `tfd.TransformedDistribution` on `R^event_size`.
    """
    event_size, conditional_size = check_coupling_event_size(event_size, conditional_size)
    num_blocks = validation.positive_int(num_blocks, "num_blocks")
    num_inducing = validation.positive_int(num_inducing, "num_inducing")
    inducing = validation.one_of(inducing, "inducing", INDUCING_MODES)
    kernel = canonical_kernel(kernel)
    seed = validation.positive_int(seed, "seed", allow_zero=True)
    dtype = validation.float_dtype(dtype)
    shared = None
    if inducing == "shared":
        shared = InducingPoints(num_inducing, event_size // 2 + conditional_size, seed=seed,
                                dtype=dtype.name, name="shared_inducing_points")
    perms = block_permutations(event_size, num_blocks, seed)
    bijectors = []
    for i in range(2 * num_blocks):
        if i % 2 == 0:
            bijectors.append(ActNorm(event_size, dtype=dtype, name=f"act_norm_{i // 2}"))
        bijectors.append(perms[i])
        bijectors.append(KernelCoupling(
            event_size, num_inducing, kernel, inducing_points=shared,
            trainable_inducing_points=inducing != "representer", length_scale=length_scale,
            learn_length_scale=learn_length_scale, log_scale_bound=log_scale_bound,
            conditional_size=conditional_size, seed=seed * 1000 + i, dtype=dtype,
            name=f"kernel_coupling_{i}"))
    return transformed(bijectors, event_size, dtype, base)


__all__ = ["INDUCING_MODES", "ferumal", "ferumal_num_params"]
