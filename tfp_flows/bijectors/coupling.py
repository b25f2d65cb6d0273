"""The one coupling-layer builder: a `tfb.RealNVP` around a Keras 3 conditioner
(`one_pass.OnePassRealNVP`: the network runs once per call).

Baselines (RealNVP, Glow, NSF), the augmentation family's RealNVP, LGF-RealNVP
and the funnels' decoder flows all build their coupling layers here.
"""

from tfp_flows.bijectors.conditioners import AffineCouplingConditioner, SplineCouplingConditioner
from tfp_flows.bijectors.one_pass import OnePassRealNVP
from tfp_flows.internal import validation
from tfp_flows.internal.contract import mark_conditional

KINDS = ("affine", "spline")


def check_coupling_event_size(event_size, conditional_size):
    """Coupling flows need `event_size >= 2`, or a condition for a scalar `p(y | c)`.

    With `event_size=1` and `conditional_size > 0` each coupling transforms
    the one coordinate (nothing is masked) with a scale and shift (or spline)
    computed from the condition alone. Returns `(event_size, conditional_size)`.
    """
    event_size = validation.positive_int(event_size, "event_size")
    conditional_size = validation.positive_int(conditional_size, "conditional_size",
                                               allow_zero=True)
    if event_size < 2 and not conditional_size:
        raise ValueError(f"Coupling flows need `event_size` >= 2; got {event_size} (a scalar "
                         "flow needs a condition: `conditional_size` > 0).")
    return event_size, conditional_size


def coupling_layer(event_size, kind="affine", conditional_size=0, name="coupling",
                   **conditioner_kwargs):
    """A coupling layer on `[..., event_size]`: the first `event_size // 2` coordinates
    condition an affine (`kind="affine"`) or rational-quadratic spline (`"spline"`)
    transform of the rest.

    Affine: `y_2 = x_2 * exp(s(x_1, c)) + t(x_1, c)` with a soft-clamped log-scale
    (`log|det| = sum s`). Spline: a monotone RQ spline per coordinate on
    `[-bound, bound]`, identity outside. `c` is the optional conditional input
    (`conditional_size > 0`; the layer is then declared conditional). With
    `event_size == 1` nothing is masked and the conditioner sees only `c`, so
    a scalar density `p(y | c)` is possible; that needs `conditional_size > 0`.

    `conditioner_kwargs` go to `AffineCouplingConditioner` /
    `SplineCouplingConditioner` (`hidden_units`, `activation`, `residual`,
    `log_scale_bound` or `num_bins` / `bound`, `dtype`).
    """
    event_size, conditional_size = check_coupling_event_size(event_size, conditional_size)
    validation.one_of(kind, "kind", KINDS)
    num_masked = event_size // 2
    if kind == "spline":
        cond = SplineCouplingConditioner(num_masked, event_size - num_masked,
                                         conditional_size=conditional_size,
                                         name=f"{name}_conditioner", **conditioner_kwargs)
        bij = OnePassRealNVP(num_masked=num_masked, bijector_fn=cond, name=name)
    else:
        cond = AffineCouplingConditioner(num_masked, event_size - num_masked,
                                         conditional_size=conditional_size,
                                         name=f"{name}_conditioner", **conditioner_kwargs)
        bij = OnePassRealNVP(num_masked=num_masked, shift_and_log_scale_fn=cond, name=name)
    return mark_conditional(bij, conditional_size) if conditional_size else bij
