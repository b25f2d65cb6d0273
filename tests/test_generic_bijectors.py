"""Every bijector in `tfp_flows.testing.BIJECTORS` passes every generic check in every mode."""

import pytest
import tensorflow as tf

from tfp_flows import bijectors, testing

# XLA compilation of these cases costs 15-45 s each on two CPU cores; the same building
# blocks are compiled under XLA by default-run tests elsewhere (real_nvp and the kernel,
# funnel and LGF cases here; the README's Glow and FFJORD quickstarts with
# `jit_compile=True`; tests/test_keras.py), so their jit variants run with `-m slow`.
SLOW_UNDER_JIT = {"ffjord", "glow", "maf", "neural_spline", "real_nvp_actnorm"}


def _cases():
    for name in sorted(testing.BIJECTORS):
        for mode in testing.MODES:
            marks = pytest.mark.slow if (mode == "jit" and name in SLOW_UNDER_JIT) else ()
            yield pytest.param(name, mode, marks=marks, id=f"{name}-{mode}")


@pytest.mark.parametrize("name,mode", _cases())
def test_generic(name, mode):
    testing.run_checks(name, mode)


def test_registry_rejects_duplicate_names():
    with pytest.raises(ValueError, match="already exists"):
        testing.register_bijector("act_norm", testing.BIJECTORS["act_norm"])


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
    testing.register_bijector(f"broken_{failing}", testing.BijectorCase(
        lambda dtype: cls(4, dtype=dtype)))
    try:
        with pytest.raises(AssertionError, match=failing):
            testing.run_checks(f"broken_{failing}", "eager")
    finally:
        del testing.BIJECTORS[f"broken_{failing}"]


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="`mode` must be one of"):
        testing.compile_fn(tf.identity, "xla")
