# symgrad.testing: the audience that tests gradient code (as numpy.testing and hypothesis.extra
# are separate audiences).  Loaded lazily from this table, so the pytest plugin stays cheap.
from . import gradcheck, properties, pytest_plugin, strategies
from .gradcheck import TOLERANCES, GradientCheckReport, PrecisionWarning, Tolerance, check_gradients
from .properties import (
    assert_chain_identity,
    assert_dense_delta_bound,
    assert_derivative_in_range,
    assert_exploding,
    assert_gradient_fn,
    assert_steep_interval,
    assert_vanishing,
)
from .typical import assert_meanfield

__all__ = [
    "TOLERANCES", "GradientCheckReport", "PrecisionWarning", "Tolerance", "check_gradients",
    "assert_chain_identity", "assert_dense_delta_bound", "assert_derivative_in_range", "assert_exploding",
    "assert_gradient_fn", "assert_steep_interval", "assert_vanishing", "assert_meanfield",
    "gradcheck", "properties", "pytest_plugin", "strategies",
]
