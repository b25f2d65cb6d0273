"""Numerical robustness of every ready-made flow (`testing.FLOWS`) in float32.

Every registered flow case (small nets, `testing.flows.build_model`:
initialised from 8 standard-normal rows, every trainable weight moved by
`N(0, 0.1^2)`; the `0.3` scale runs in the slow suite) must give

* a finite `log_prob` at inputs `sigma * N(0, I)`, sigma = 1, 10, 100;
* finite samples with a finite `log_prob`;
* for the exact flows of the plane (event size 2), a normalised density
  (the midpoint rule on a grid, below), and for those that are TFP
  transformed distributions, the same log-density on the density side
  (`log_prob`, through the inverse) as on the sampling side
  (`log p_base(z) - fldj(z)` at `x = f(z)`).

The measurements are `testing.flows.robustness_profile` (one `log_prob` call
per flow scores the outliers, the samples and the grid together, so the file
costs about one eager pass per flow); `benchmarks/robustness.py
--distributions` tabulates the same numbers. The importance-sampled families
(augmented, LGF) get only the finiteness checks: their estimate is biased
low by construction, so no exact identity holds for it.
"""

import pytest

from tfp_flows.testing import flows as flow_testing

# Midpoint rule on [-L, L]^2 with n^2 cells: h = 2L/n = 0.125. For a near-standard density
# the relative quadrature error is about h^2/24 |f''/f| <~ 1e-3 (the rule is far better for
# a Gaussian: its error is exponentially small in 1/h^2), and the mass beyond |x| = 8 is
# < 1e-12. Measured |integral - 1| <= 1e-5 at s = 0.1 (docs/numerics.md); 1e-3 catches a
# density that is off by a constant factor (a missing log-det term: percent or more).
MASS_TOL = 1e-3
# Density side vs sampling side at the flow's own samples: the chain's log-det gap plus the
# base log-density at the round-trip error, float32 roundings of O(10) nats; measured
# <= 2e-6 nats at s = 0.1 (the bijector sweep, tests/test_robustness.py, allows up to 1e-4
# for these families at 1 sigma, 1e-3 for splines).
SIDES_ATOL = 1e-4


def _params(scales):
    out = []
    for name in flow_testing.FLOWS:
        for scale in scales:
            marks = [pytest.mark.slow] if scale > 0.1 else []
            out.append(pytest.param(name, scale, marks=marks, id=f"{name}-s{scale}"))
    return out


@pytest.mark.parametrize("name, scale", _params((0.1, 0.3)))
def test_ready_made_flow_is_finite_for_outliers_and_consistent(name, scale):
    out = flow_testing.robustness_profile(name, scale)
    bad = {k: v for k, v in out.items() if k.startswith("non-finite") and v}
    assert not bad, f"{name} at weight scale {scale}: {bad}"
    if "mass - 1" in out and scale <= 0.1:
        assert abs(out["mass - 1"]) < MASS_TOL, out
    if "sides gap" in out and scale <= 0.1:
        assert out["sides gap"] < SIDES_ATOL, out


def test_every_flow_case_is_swept():
    assert sorted(p.values[0] for p in _params((0.1,))) == sorted(flow_testing.FLOWS)
