"""Every registered flow passes every flow-level check, unconditional and conditional."""

import pytest

from tfp_flows import testing
from tfp_flows.testing import flows as flow_testing


def _cases():
    for name in sorted(testing.FLOWS):
        case = testing.FLOWS[name]
        for conditional in (False, True):
            for check in testing.FLOW_CHECKS:
                marks = pytest.mark.slow if case.is_slow(check, conditional) else ()
                mode = "conditional" if conditional else "plain"
                yield pytest.param(name, conditional, check, marks=marks,
                                   id=f"{name}-{mode}-{check}")


@pytest.mark.parametrize("name,conditional,check", _cases())
def test_generic_flow(name, conditional, check):
    testing.run_flow_checks(name, conditional, checks=[check])


def test_every_registered_flow_has_a_case():
    assert flow_testing.missing_cases() == []


def test_flow_checks_can_fail():
    """A flow whose weights are NaN fails the log_prob check."""
    model, x, c = flow_testing.build_model("real_nvp", False)
    for w in model.trainable_weights:
        w.assign(w * float("nan"))
    with pytest.raises(AssertionError, match="non-finite log_prob"):
        flow_testing.check_log_prob(model, testing.FLOWS["real_nvp"], x, c)
