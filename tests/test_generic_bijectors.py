"""Every bijector in `tfp_flows.testing.BIJECTORS` passes every generic check in every mode."""

import pytest
import tensorflow as tf

from tfp_flows import bijectors, testing


def _cases():
    for name in sorted(testing.BIJECTORS):
        for mode in testing.MODES:
            marks = pytest.mark.slow if mode in testing.BIJECTORS[name].slow_modes else ()
            yield pytest.param(name, mode, marks=marks, id=f"{name}-{mode}")


@pytest.mark.parametrize("name,mode", _cases())
def test_generic(name, mode):
    testing.run_checks(name, mode)


def test_registry_is_read_only():
    with pytest.raises(TypeError):
        testing.BIJECTORS["act_norm"] = testing.BIJECTORS["act_norm"]


class _WrongLogDet(bijectors.ActNorm):
    def _forward_log_det_jacobian(self, x):
        return super()._forward_log_det_jacobian(x) + 0.1


class _NotInvertible(bijectors.ActNorm):
    def _inverse(self, y):
        return super()._inverse(y) * 1.01


@pytest.mark.parametrize("cls,failing", [(_WrongLogDet, "jacobian"),
                                         (_NotInvertible, "round_trip")])
def test_checks_can_fail(cls, failing):
    """A broken bijector fails the check that targets its defect."""
    case = testing.BijectorCase(lambda dtype: cls(4, dtype=dtype))
    with pytest.raises(AssertionError, match=failing):
        testing.run_checks(case, "eager")


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="`mode` must be one of"):
        testing.compile_fn(tf.identity, "xla")
