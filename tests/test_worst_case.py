"""symgrad.theory.worst_case: the regime of |w|·sup|φ'| (the library half of ``symgrad bounds``)."""

from __future__ import annotations

import math

import pytest

from symgrad import InvalidArgument
from symgrad.theory.worst_case import REGIMES, ChainBound, chain_bound, format_log10


@pytest.mark.parametrize("act, scale, regime", [
    ("sigmoid", 1.0, "vanishing"),   # 1/4 < 1
    ("sigmoid", 4.0, "neither"),     # exactly 1
    ("sigmoid", 4.5, "exploding"),
    ("tanh", 0.999, "vanishing"),
    ("tanh", 1.0, "neither"),
    ("tanh", 1.001, "exploding"),
    ("relu", 0.5, "vanishing"),
    ("sigmoid", 0.0, "vanishing"),   # factor 0
    ("exp(z)", 1.0, "unbounded"),
])
def test_regime_is_the_side_of_one_of_the_per_layer_factor(act, scale, regime):
    b = chain_bound(act, scale, 10)
    assert isinstance(b, ChainBound) and b.regime == regime and b.regime in REGIMES


def test_factor_over_depth_is_carried_in_log10_and_never_formed():
    b = chain_bound("sigmoid", 1.0, 100_000)
    assert b.log10_per_layer_factor == pytest.approx(math.log10(0.25), rel=1e-15)
    assert b.log10_factor_over_depth == pytest.approx(100_000 * math.log10(0.25), rel=1e-15)
    assert b.factor_over_depth == "1.002e-60206"  # 0.25^100000 = 10^(−60205.999…)


def test_exploding_everywhere_says_at_least_when_inf_phi_prime_times_w_exceeds_one():
    # leaky_relu: |φ'| ≥ α everywhere; with |w|·α > 1 every layer grows the gradient.
    b = chain_bound("leaky_relu", 1000.0, 3)
    assert b.regime == "exploding" and "at least" in b.why
    assert "near its sup" in chain_bound("sigmoid", 8.0, 3).why


def test_zero_factor_prints_zero():
    b = chain_bound("sigmoid", 0.0, 5)
    assert b.per_layer_factor == "0" and b.log10_factor_over_depth == -math.inf


@pytest.mark.parametrize("lg, text", [(600.0791812460476, "1.2e+600"), (-0.6020599913279624, "0.25"),
                                      (-math.inf, "0"), (299.99999999999, "1e+300"), (-60206.0, "1e-60206")])
def test_format_log10(lg, text):
    assert format_log10(lg) == text


@pytest.mark.parametrize("kw, message", [
    (dict(weight_scale=-1.0), "weight_scale=-1.0"),
    (dict(weight_scale=math.inf), "weight_scale=inf"),
    (dict(weight_scale=True), "weight_scale=True"),
    (dict(depth=0), "depth=0"),
    (dict(depth=2.5), "depth=2.5"),
])
def test_bad_arguments_are_refused_by_name(kw, message):
    args = dict(activation="sigmoid", weight_scale=1.0, depth=3) | kw
    with pytest.raises(InvalidArgument, match=message):
        chain_bound(**args)


def test_cli_bounds_formats_chain_bound():
    """The command line holds no classification of its own: its facts are chain_bound's."""
    from symgrad import cli
    from symgrad.spec.activations import activation

    for act, scale, depth in [("sigmoid", 1.0, 10), ("tanh", 3.0, 7), ("exp(z)", 1.0, 2), ("relu", 1.0, 4)]:
        b = chain_bound(act, scale, depth)
        facts = cli._bounds_facts(activation(act), scale, depth)
        assert (facts["regime"], facts["why"], facts["per_layer_factor"]) == (b.regime, b.why, b.per_layer_factor)
