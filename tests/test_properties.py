"""symgrad.testing.properties: each property tested with @given on symgrad's own networks, both on the
closed form (symbolically, derived once outside @given and cached) and numerically."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy
from hypothesis import given, settings, strategies as st

import symgrad
from symgrad import GradientCheckError, InvalidArgument
from symgrad.testing import properties as P
from symgrad.testing import strategies as S

FLOATS = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
NUMERIC = settings(deadline=None)

# ---------------------------------------------------------------------------------------------
# 1. Derivative ranges
# ---------------------------------------------------------------------------------------------

BUILTINS = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu", "gelu", "softsign", "identity"]


@pytest.mark.parametrize("name", BUILTINS)
def test_catalogue_sup_is_confirmed_symbolically(name):
    check = P.verify_derivative_bound(name)
    assert check.sup == symgrad.activation(name).bound.sup


def test_sigmoid_and_tanh_attain_their_sup_only_at_zero_symbolically():
    for name in ("sigmoid", "tanh"):
        check = P.verify_derivative_bound(name)
        assert check.attained_at == sympy.FiniteSet(0) and "²" in check.method


@pytest.mark.parametrize("name", BUILTINS)
@NUMERIC
@given(z=st.lists(FLOATS, min_size=1, max_size=20))
def test_derivative_lies_in_the_catalogue_range(name, z):
    P.assert_derivative_in_range(name, z)


ULP = np.finfo(np.float64).eps


@NUMERIC
@given(z=FLOATS)
def test_sigmoid_derivative_is_positive_at_most_a_quarter_with_equality_only_at_zero(z):
    sig = symgrad.activation("sigmoid")
    g = float(sig.grad(np.array(z)))
    assert 0 <= g <= 0.25 and float(sig.log_abs_grad(np.array(z))) > -np.inf
    if abs(z) >= 1e-7:  # 1/4 − σ'(z) ≈ z²/16 is then above the rounding of 1/4
        assert g < 0.25


def test_sigmoid_kernel_never_rounds_above_a_quarter():
    """e/(1 + e)² rounded to 0.25000000000000006 at z = 1e-12 (found by the property above)."""
    assert float(symgrad.activation("sigmoid").grad(np.array(1e-12))) <= 0.25


@NUMERIC
@given(z=FLOATS)
def test_tanh_derivative_is_positive_at_most_one(z):
    t = symgrad.activation("tanh")
    g = float(t.grad(np.array(z)))
    assert 0 <= g <= 1 and float(t.log_abs_grad(np.array(z))) > -np.inf
    if abs(z) >= 1e-7:
        assert g < 1


@NUMERIC
@given(z=FLOATS, alpha=st.sampled_from([0.01, 0.1, 0.3]))
def test_relu_and_leaky_relu_derivatives_take_two_values(z, alpha):
    assert float(symgrad.activation("relu").grad(np.array(z))) in (0.0, 1.0)
    assert float(symgrad.activation("leaky_relu", alpha=alpha).grad(np.array(z))) in (alpha, 1.0)


def test_a_wrong_catalogue_bound_fails_with_the_values():
    fake = symgrad.custom_activation("2*z", name="double", bound=symgrad.spec.DerivativeBound(
        sympy.Rational(1, 4), sympy.FiniteSet(0), sympy.Interval.Lopen(0, sympy.Rational(1, 4)), True))
    with pytest.raises(GradientCheckError, match=r"double'\(z\) = 2 at z = 0.5 exceeds sup\|double'\| = 1/4"):
        P.assert_derivative_in_range(fake, [0.5])


# ---------------------------------------------------------------------------------------------
# 2-4. Chains
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2, 3, 5, 12])
@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu", "gelu"])
def test_chain_identity_holds_on_the_closed_form(depth, act):
    prod = P.verify_chain_identity(depth, act)
    assert len(prod.args) == 2 * (depth - 1) or depth <= 2


@NUMERIC
@given(st.data())
def test_chain_identity_holds_numerically(data):
    net = data.draw(S.chains(max_depth=10))
    P.assert_chain_identity(net, data.draw(S.parameters(net=net)))


_CLOSED = {}


def _closed_forms(net):
    """∂C/∂b1 and ∂C/∂bL of a chain, derived once per chain (never inside an example)."""
    key = repr(net)
    if key not in _CLOSED:
        _CLOSED[key] = (net.gradient("b1"), net.gradient("b%d" % net.depth))
    return _CLOSED[key]


@NUMERIC
@given(st.data())
def test_chain_identity_holds_for_the_evaluated_closed_form(data):
    net = data.draw(S.chains(min_depth=2, max_depth=6, activation=S.activations(names=["sigmoid", "tanh", "softsign"])))
    params = data.draw(S.parameters(net=net, max_weight=2.0))
    g1, gL = _closed_forms(net)
    v1, vL = float(symgrad.evaluate_gradient(g1, params)), float(symgrad.evaluate_gradient(gL, params))
    # The reference: the same closed forms evaluated in 50-digit arithmetic at the same local
    # values z_j, a_L (the forward pass is tested on its own).  Each of the n = 2L − 1 factors is
    # within 4 ulps (4ε relative) of its exact value and each product rounds once (u = ε/2):
    # relative error ≤ n·(4ε + ε/2) to first order; 5nε allows the second-order terms.
    # A sigmoid output's a_L − y is σ(z_L) − y formed from the logit: its terms (σ(−|z_L|) and
    # 1 − y, or σ(z_L) and y) carry 4 ulps each, so its relative error grows with their
    # cancellation κ = (|σ(z_L)| + |y|)/|σ(z_L) − y|; the other outputs subtract y from the
    # float a_L, which the reference does too.
    ref1, refL, kappa = _mp_closed_forms(net, params)
    L = net.depth
    for got, ref, n in ((v1, ref1, 2 * L - 1), (vL, refL, 1)):
        if abs(ref) < np.finfo(np.float64).tiny:   # below the normal range the error is absolute
            assert abs(got - float(ref)) <= 2 * n * 2.0 ** -1074
        else:
            assert abs(got - ref) <= (5 * n + 4 * kappa) * ULP * abs(ref), (got, ref, float(abs(got - ref) / abs(ref)))


def _mp_closed_forms(net, params):
    """∂C/∂b_1 and ∂C/∂b_L of a sigmoid/tanh/softsign chain with the quadratic loss, from the
    forward pass's float z_j and a_L, in 50-digit mpmath arithmetic."""
    import mpmath

    dphi = {
        "sigmoid": lambda z: mpmath.exp(-z) / (1 + mpmath.exp(-z)) ** 2,
        "tanh": lambda z: 1 - mpmath.tanh(z) ** 2,
        "softsign": lambda z: 1 / (1 + abs(z)) ** 2,
    }
    loc = symgrad.forward(net, params)
    L = net.depth
    with mpmath.workdps(50):
        z = [mpmath.mpf(float(loc["z%d" % j])) for j in range(1, L + 1)]
        # a_L − y: a sigmoid output's is σ(z_L) − y from the logit (symgrad forms it so: a_L − y
        # would cancel where σ saturates), so the reference takes σ(z_L) exactly; the others
        # subtract y from the float a_L.
        y = mpmath.mpf(float(params["y"]))
        if net.activations[-1].name == "sigmoid":
            aL = 1 / (1 + mpmath.exp(-z[-1]))
            kappa = float((abs(aL) + abs(y)) / abs(aL - y)) if aL != y else 0.0
        else:
            aL, kappa = mpmath.mpf(float(loc["a%d" % L])), 0.0
        gL = (aL - y) * dphi[net.activations[-1].name](z[-1])
        g1 = gL
        for j in range(1, L):
            g1 *= mpmath.mpf(float(params["w%d" % (j + 1)])) * dphi[net.activations[j - 1].name](z[j - 1])
        return g1, gL, kappa


DEEP = symgrad.chain(10_000)


@pytest.mark.slow
@settings(deadline=None, max_examples=5)
@given(seed=st.integers(0, 2**32 - 1), init=st.sampled_from(["normal", "uniform", "xavier"]))
def test_chain_identity_holds_in_log_space_at_depth_ten_thousand(seed, init):
    params = symgrad.sample(DEEP, init=init, seed=seed)
    P.assert_chain_identity(DEEP, params)


@NUMERIC
@given(st.data())
def test_small_weights_with_sigmoid_decay_by_a_quarter_per_layer(data):
    net = data.draw(S.chains(min_depth=2, max_depth=10, activation="sigmoid"))
    P.assert_vanishing(net, data.draw(S.parameters(net=net, max_weight=1.0)), rate=0.25)


@NUMERIC
@given(S.parameters(net=symgrad.chain(3), max_weight=1.0))
def test_depth_three_sigmoid_with_unit_weights_gives_a_sixteenth(params):
    res = symgrad.backprop(symgrad.chain(3), params)
    # b1 = b3·w3σ'(z2)·w2σ'(z1) with |w| ≤ 1 and σ' ≤ 1/4 (the kernel never rounds above it): four
    # roundings, (1 + u)⁴ ≤ 1 + 2.01ε.  No value here is subnormal: |z| ≤ 5, so a3 − y ≥ ulp(a3).
    assert abs(res.grads["b1"]) <= abs(res.grads["b3"]) / 16 * (1 + 2.01 * ULP)


def test_decay_on_the_closed_form():
    """Symbolically: ∂C/∂b1 = (Π w_(j+1) σ'(z_j)) ∂C/∂bL, and |σ'| ≤ 1/4 with |w| ≤ 1 makes each factor ≤ 1/4."""
    prod = P.verify_chain_identity(3, "sigmoid")
    assert P.verify_derivative_bound("sigmoid").sup == sympy.Rational(1, 4)
    w2, w3 = sympy.symbols("w2 w3", real=True)
    assert prod.atoms(sympy.Symbol) >= {w2, w3}


@NUMERIC
@given(st.data())
def test_vanishing_regime_decays_at_the_rate(data):
    net = data.draw(S.chains(min_depth=2))
    rate = data.draw(st.floats(0.01, 0.99))
    P.assert_vanishing(net, data.draw(S.parameters(net=net, regime="vanishing", rate=rate)), rate=rate)


@NUMERIC
@given(st.data())
def test_exploding_regime_grows_at_the_rate(data):
    net = data.draw(S.chains(min_depth=2, activation=S.activations(names=["sigmoid", "tanh", "relu", "softsign"])))
    rate = data.draw(st.floats(1.01, 20.0))
    P.assert_exploding(net, data.draw(S.parameters(net=net, regime="exploding", rate=rate)), rate=rate)


@NUMERIC
@given(S.parameters(net=symgrad.chain(5), regime="exploding", rate=25.0))
def test_nielsens_construction_gives_exactly_25_per_layer(params):
    assert np.all(np.abs(P.chain_factors(symgrad.chain(5), params)[0]) == 25.0)
    P.assert_exploding(symgrad.chain(5), params, rate=25.0)


def test_a_failed_premise_is_a_misuse_not_a_failure():
    net = symgrad.chain(2)
    p = symgrad.sample(net, value={"w1": 1.0, "w2": 100.0, "b1": 0.0, "b2": 0.0, "a0": 0.0, "y": 0.0})
    with pytest.raises(InvalidArgument, match=r"\|w2 φ'\(z1\)\| = 25 > rate = 0.25"):
        P.assert_vanishing(net, p, rate=0.25)
    with pytest.raises(InvalidArgument, match=r"rate = 30"):
        P.assert_exploding(net, p, rate=30.0)


# ---------------------------------------------------------------------------------------------
# 5. Dense networks
# ---------------------------------------------------------------------------------------------


@NUMERIC
@given(st.data())
def test_dense_deltas_are_bounded_by_spectral_norms(data):
    net = data.draw(S.networks(activation=S.activations(names=["sigmoid", "tanh", "relu", "gelu", "elu"]),
                               loss=st.sampled_from(["quadratic", "cross_entropy"])))
    if net.loss.name == "cross_entropy" and net.activations[-1].name != "sigmoid":
        net = symgrad.network(list(net.widths), net.activations[0], "quadratic")
    P.assert_dense_delta_bound(net, data.draw(S.parameters(net=net)))


@NUMERIC
@given(st.data())
def test_dense_bound_is_tight_for_the_single_neuron_chain(data):
    depth = data.draw(st.integers(1, 6))
    chain = symgrad.chain(depth)
    cp = data.draw(S.parameters(net=chain, regime="exploding", rate=1.5, max_weight=20.0))
    net = symgrad.network([1] * (depth + 1))
    dp = {k: np.array([[v]]) if k[0] == "w" else np.array([v]) for k, v in cp.items()}
    dp = {(k.upper() if k[0] == "w" else k): v for k, v in dp.items()}
    norms, bounds = P.dense_delta_bounds(net, dp)
    rtol, atol = P._dense_tolerances(net, dp, bounds, norms)  # the bound's own derived rounding allowance
    np.testing.assert_allclose(norms, bounds, rtol=rtol, atol=float(np.max(atol)))


# ---------------------------------------------------------------------------------------------
# 6. |w σ'(wa + b)| ≥ 1
# ---------------------------------------------------------------------------------------------


def test_steep_interval_derivation_is_exact():
    d = P.steep_interval_derivation()
    assert all(d["checks"].values()), d["checks"]
    # At w ≥ 5 the float formula is well conditioned (1 − 4/w ≥ 0.2, log's argument ≥ 2.6): about ten
    # roundings, none amplified more than 4-fold, so 64ε; at w = 4 both are exactly 0.
    for w in (4, 5, 100, 1e4):
        assert math.isclose(float(d["width"].subs(d["u"], w)), P.steep_interval_width(w), rel_tol=64 * ULP, abs_tol=0.0)


@NUMERIC
@given(w=st.floats(-300, 300), b=st.floats(-50, 50), t=st.lists(st.floats(-1.5, 1.5), min_size=1, max_size=40))
def test_steep_points_lie_in_an_interval_of_the_derived_width(w, b, t):
    """Sample a around the centre −b/w, on the scale of the interval, and check every steep one."""
    if w == 0:
        return
    half = max(P.steep_interval_width(w), 1e-3) / 2
    with np.errstate(over="ignore"):
        a = -b / w + np.array(t) * half
    if not np.all(np.isfinite(a)):  # −b/w overflows for subnormal w: no finite a to sample there
        return
    P.assert_steep_interval(w, b, a)


@NUMERIC
@given(w=st.floats(-3.999, 3.999), b=FLOATS, a=st.lists(FLOATS, min_size=1, max_size=20))
def test_no_point_is_steep_below_four(w, b, a):
    sig = symgrad.activation("sigmoid")
    with np.errstate(over="ignore"):
        assert np.all(np.abs(w * sig.grad(w * np.array(a) + b)) < 1)


@NUMERIC
@given(w=st.floats(4.5, 1e4) | st.floats(-1e4, -4.5), b=st.floats(-50, 50))
def test_the_steep_interval_is_tight(w, b):
    """Points just inside both ends are steep, so the width cannot be made smaller."""
    lo, hi = P.steep_interval(w, b)
    inside = np.array([lo + 1e-6 * (hi - lo), hi - 1e-6 * (hi - lo)])
    assert np.all(np.abs(w * symgrad.activation("sigmoid").grad(w * inside + b)) >= 1)


# ---------------------------------------------------------------------------------------------
# 7. A user's gradient function
# ---------------------------------------------------------------------------------------------


def _torch_free_backprop(net):
    """An independent hand-written backprop for chains, the "code under test"."""
    def grad_fn(params):
        L = net.depth
        a, As, Zs = params["a0"], [params["a0"]], []
        for j, act in enumerate(net.activations, start=1):
            z = params["w%d" % j] * a + params["b%d" % j]
            a = float(act.value(np.array(z)))
            Zs.append(z)
            As.append(a)
        delta = (a - params["y"]) * float(net.activations[-1].grad(np.array(Zs[-1])))
        out = {}
        for j in range(L, 0, -1):
            out["b%d" % j], out["w%d" % j] = delta, delta * As[j - 1]
            if j > 1:
                delta = delta * params["w%d" % j] * float(net.activations[j - 2].grad(np.array(Zs[j - 2])))
        return out
    return grad_fn


@NUMERIC
@given(st.data())
def test_a_correct_gradient_function_passes(data):
    net = data.draw(S.chains(max_depth=5, activation=S.activations(names=["sigmoid", "tanh", "softplus"])))
    P.assert_gradient_fn(net, data.draw(S.parameters(net=net, max_weight=2.0)), _torch_free_backprop(net))


def test_a_wrong_gradient_function_fails_naming_the_parameter():
    net = symgrad.chain(3)
    right = _torch_free_backprop(net)

    def wrong(params):
        g = right(params)
        g["w2"] = 2 * g["w2"]
        return g

    with pytest.raises(GradientCheckError, match=r"grad_fn: ∂C/∂w2"):
        P.assert_gradient_fn(net, symgrad.sample(net, seed=0), wrong)


# ---------------------------------------------------------------------------------------------
# Argument validation of the properties
# ---------------------------------------------------------------------------------------------

CHAIN = symgrad.chain(3)
CP = symgrad.sample(CHAIN, seed=0)

INVALID = [
    (P.assert_vanishing, (CHAIN, CP), dict(rate=1.5), "must be < 1"),
    (P.assert_vanishing, (CHAIN, CP), dict(rate=-1), "positive finite"),
    (P.assert_exploding, (CHAIN, CP), dict(rate=0.5), "must be > 1"),
    (P.assert_chain_identity, (symgrad.network([1, 1]), {}), {}, "must be a symgrad chain"),
    (P.assert_chain_identity, (CHAIN, symgrad.sample(CHAIN, 2, seed=0)), {}, "is batched"),
    (P.dense_delta_bounds, (CHAIN, CP), {}, "symgrad.network"),
    (P.assert_derivative_in_range, ("sigmoid", [math.nan]), {}, "must be finite"),
    (P.assert_gradient_fn, (CHAIN, CP, "not callable"), {}, "must be callable"),
    (P.verify_chain_identity, (0,), {}, "positive int"),
    (P.steep_interval_width, (math.inf,), {}, "must be finite"),
]


@pytest.mark.parametrize("fn, args, kwargs, fix", INVALID, ids=[f"{f.__name__}-{i}" for i, (f, *_ ) in enumerate(INVALID)])
def test_property_helpers_reject_bad_arguments(fn, args, kwargs, fix):
    with pytest.raises(InvalidArgument, match=fix):
        fn(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# Every assertion fails just past its boundary (and passes at it)
# ---------------------------------------------------------------------------------------------

DELTA = 1e-9  # "just past": far above every rounding allowance here (≲ 1e-12), far below any real effect


def _pinned_chain(depth, w):
    """A sigmoid chain with every z_j = 0 (b_j = −w a_{j−1}), so every factor is exactly w·σ'(0) = w/4."""
    net = symgrad.chain(depth)
    p = {"a0": 0.5, "y": 0.0, "w1": 1.0, "b1": -0.5}
    for j in range(2, depth + 1):
        p["w%d" % j], p["b%d" % j] = w, -w * 0.5
    return net, symgrad.sample(net, value=p)


def _shift_grads(monkeypatch, **change):
    """Feed the chain assertions a backprop result moved just past the boundary: ``change`` maps
    a field of ``_ChainGrads`` to a function of the true result."""
    import dataclasses

    real = P._log_grads

    def fake(net, params):
        g = real(net, params)
        return dataclasses.replace(g, **{k: f(g) for k, f in change.items()})

    monkeypatch.setattr(P, "_log_grads", fake)


def test_the_issues_underflowing_example_holds_without_dividing_by_zero():
    """∂C/∂b2 = σ'(−799.5)(a2 − y) underflows to 0 in linear space; the log-space check stands."""
    p = dict(a0=0., w1=0., b1=0., w2=1., b2=-800., y=.5)
    net = symgrad.chain(2)
    assert float(symgrad.backprop(net, p).grads["b2"]) == 0.0
    P.assert_chain_identity(net, p)


@pytest.mark.parametrize("depth", [2, 5])
def test_vanishing_premise_boundary(depth):
    net, p = _pinned_chain(depth, 2.0)   # every factor is exactly 0.5
    assert np.all(P.chain_factors(net, p)[0] == 0.5)
    P.assert_vanishing(net, p, rate=0.5)               # equality in the conclusion passes
    P.assert_vanishing(net, p, rate=0.5 * (1 + DELTA))
    with pytest.raises(InvalidArgument, match="premise fails"):
        P.assert_vanishing(net, p, rate=0.5 * (1 - DELTA))


@pytest.mark.parametrize("depth", [2, 5])
def test_exploding_premise_boundary(depth):
    net, p = _pinned_chain(depth, 100.0)   # Nielsen: every factor is exactly 25
    P.assert_exploding(net, p, rate=25.0)
    P.assert_exploding(net, p, rate=25.0 * (1 - DELTA))
    with pytest.raises(InvalidArgument, match="premise fails"):
        P.assert_exploding(net, p, rate=25.0 * (1 + DELTA))


@pytest.mark.parametrize("depth", [2, 5])
def test_vanishing_conclusion_fails_just_past_the_bound(monkeypatch, depth):
    """|∂C/∂b1| a relative 1e-9 above rate^(L−1)|∂C/∂bL| fails (so checking √rate, or nothing, is caught)."""
    net, p = _pinned_chain(depth, 2.0)
    _shift_grads(monkeypatch, l1=lambda g: (depth - 1) * math.log(0.5) + g.lL + DELTA)
    with pytest.raises(GradientCheckError, match="vanishing bound violated"):
        P.assert_vanishing(net, p, rate=0.5)
    _shift_grads(monkeypatch, l1=lambda g: g.l1, lL=lambda g: -math.inf, sL=lambda g: 0.0)   # ∂C/∂bL = 0, ∂C/∂b1 ≠ 0
    with pytest.raises(GradientCheckError, match="vanishing bound violated"):
        P.assert_vanishing(net, p, rate=0.5)


@pytest.mark.parametrize("depth", [2, 5])
def test_exploding_conclusion_fails_just_past_the_bound(monkeypatch, depth):
    """|∂C/∂b1| a relative 1e-9 below 25^(L−1)|∂C/∂bL| fails (so checking a rate of 1, or nothing, is caught)."""
    net, p = _pinned_chain(depth, 100.0)
    _shift_grads(monkeypatch, l1=lambda g: (depth - 1) * math.log(25.0) + g.lL - DELTA)
    with pytest.raises(GradientCheckError, match="exploding bound violated"):
        P.assert_exploding(net, p, rate=25.0)


def test_rounding_allowances_are_far_below_the_boundary_tests():
    net, p = _pinned_chain(5, 100.0)
    vals, logw, logg, *_ = P._factor_parts(net, p)
    assert P._log_tol(5, logw, logg, [30.0, 30.0]) + P._premise_gap(5) < DELTA / 100
    assert P._linear_rtol(5) < DELTA / 100


@pytest.mark.parametrize("field, change, message", [
    ("l1", lambda g: g.l1 + DELTA, "log space"),
    ("s1", lambda g: -g.s1, "sign"),
    ("s1", lambda g: 0.0, "exactly 0"),
])
def test_chain_identity_fails_just_past_it_in_log_space(monkeypatch, field, change, message):
    net, p = _pinned_chain(4, 3.0)
    P.assert_chain_identity(net, p)
    _shift_grads(monkeypatch, **{field: change})
    with pytest.raises(GradientCheckError, match=message):
        P.assert_chain_identity(net, p)


def test_chain_identity_fails_when_a_zero_factor_meets_a_nonzero_gradient(monkeypatch):
    net = symgrad.chain(3, "relu")
    p = symgrad.sample(net, value={"a0": 1.0, "y": 0.0, "w1": 1.0, "b1": -2.0, "w2": 1.0, "b2": 1.0, "w3": 1.0, "b3": 0.5})
    assert P.chain_factors(net, p)[2][0] == 0    # relu'(z1 = −1) = 0: a dead unit
    P.assert_chain_identity(net, p)
    _shift_grads(monkeypatch, s1=lambda g: 1.0, l1=lambda g: 0.0)
    with pytest.raises(GradientCheckError, match="exactly 0"):
        P.assert_chain_identity(net, p)


@pytest.mark.parametrize("depth", [2, 6])
def test_chain_identity_linear_check_has_exactly_its_derived_tolerance(monkeypatch, depth):
    """∂C/∂b1 moved by a quarter of rtol passes (plus its own few-ε rounding); by twice rtol it fails."""
    net, p = _pinned_chain(depth, 3.0)
    rtol = P._linear_rtol(depth)
    move = lambda k: (lambda g: (g.deltas[0] * (1 + k * rtol),) + g.deltas[1:])  # noqa: E731
    _shift_grads(monkeypatch, deltas=move(0.25))
    P.assert_chain_identity(net, p)
    _shift_grads(monkeypatch, deltas=move(2.0))
    with pytest.raises(GradientCheckError, match="relative error"):
        P.assert_chain_identity(net, p)


def _fake_sigmoid(sup, name):
    """The sigmoid with a catalogue entry claiming ``sup`` (a counterexample to a wrong catalogue)."""
    return symgrad.custom_activation("1/(1 + exp(-z))", name=name, bound=symgrad.spec.DerivativeBound(
        sup, sympy.FiniteSet(0), sympy.Interval.Lopen(0, sup), True))


QUARTER = sympy.Rational(1, 4)
JUST_BELOW = QUARTER * (1 - sympy.Rational(1, 10**9))
JUST_ABOVE = QUARTER * (1 + sympy.Rational(1, 10**9))


def _pinned_dense(act, depth, w=3.0):
    """A width-1 dense network with every z = 0: the spectral bound holds with equality."""
    net = symgrad.network([1] * (depth + 1), act)
    p = {"a0": np.array([0.5]), "y": np.array([0.0])}
    for l in range(1, depth + 1):
        p["W%d" % l], p["b%d" % l] = np.array([[w]]), np.array([-w * 0.5])
    return net, p


@pytest.mark.parametrize("depth", [1, 3])
def test_dense_bound_fails_just_past_a_wrong_sup(depth):
    net, p = _pinned_dense("sigmoid", depth)
    P.assert_dense_delta_bound(net, p)                                         # tight: equality
    P.assert_dense_delta_bound(*_pinned_dense(_fake_sigmoid(JUST_ABOVE, "sig_above"), depth))
    with pytest.raises(GradientCheckError, match="dense bound violated"):
        P.assert_dense_delta_bound(*_pinned_dense(_fake_sigmoid(JUST_BELOW, "sig_below"), depth))


def test_dense_bound_rejects_a_bad_rtol():
    with pytest.raises(InvalidArgument, match="rtol=-1"):
        P.assert_dense_delta_bound(*_pinned_dense("sigmoid", 2), rtol=-1)


def test_derivative_range_fails_just_past_the_sup():
    P.assert_derivative_in_range(_fake_sigmoid(QUARTER, "sig_exact"), [0.0])
    with pytest.raises(GradientCheckError, match="exceeds sup"):
        P.assert_derivative_in_range(_fake_sigmoid(QUARTER * (1 - sympy.Rational(1, 10**12)), "sig_1e12"), [0.0])


def test_derivative_range_fails_where_a_range_is_wrong():
    dead = symgrad.custom_activation("Max(0, z)", name="relu_open", bound=symgrad.spec.DerivativeBound(
        1, sympy.Interval(0, sympy.oo), sympy.Interval.Lopen(0, 1), True))
    P.assert_derivative_in_range(dead, [0.5, 3.0])
    with pytest.raises(GradientCheckError, match="excludes 0"):   # φ' = 0 at z = −1, but the range is (0, 1]
        P.assert_derivative_in_range(dead, [-1.0])
    leaky = symgrad.custom_activation("Max(z/100, z)", name="leaky_wrong", bound=symgrad.spec.DerivativeBound(
        1, sympy.Interval(0, sympy.oo), sympy.FiniteSet(sympy.Rational(1, 50), 1), True))
    P.assert_derivative_in_range(leaky, [2.0])
    with pytest.raises(GradientCheckError, match="is not in the range"):
        P.assert_derivative_in_range(leaky, [-2.0])


@pytest.mark.parametrize("sup", [sympy.Rational(1, 3), JUST_ABOVE, JUST_BELOW])
def test_verify_derivative_bound_rejects_a_sup_that_is_off(sup):
    with pytest.raises(GradientCheckError, match="catalogue says"):
        P.verify_derivative_bound(_fake_sigmoid(sup, "sig_%s" % abs(hash(sup))))
    assert P.verify_derivative_bound(_fake_sigmoid(QUARTER, "sig_right")).sup == QUARTER


def test_peak_step_computes_the_maximum_and_rejects_wrong_derivatives():
    s, u = sympy.Symbol("s", positive=True), sympy.Symbol("u", positive=True)
    assert P._peak_threshold(s * (1 - s), s, u, QUARTER) == (True, QUARTER)
    assert P.steep_interval_derivation()["peak"] == QUARTER
    assert P._peak_threshold(s * (1 - s) * sympy.Rational(4, 3), s, u, QUARTER)[0] is False   # max 1/3: u ≥ 3
    assert P._peak_threshold(s * (1 - s), s, u, sympy.Rational(1, 3))[0] is False              # catalogue off
    assert P._peak_threshold(s * (1 - s) ** 2, s, u, sympy.Rational(4, 27))[0] is False         # not a square


@pytest.mark.parametrize("w, b", [(100.0, 3.0), (-7.5, 0.25), (4.5, -2.0)])
def test_steep_interval_assertion_fails_if_the_width_were_1_percent_smaller(monkeypatch, w, b):
    lo, hi = P.steep_interval(w, b)
    near_ends = np.array([lo + 1e-4 * (hi - lo), hi - 1e-4 * (hi - lo)])   # steep (the interval is tight)
    P.assert_steep_interval(w, b, near_ends)
    real = P.steep_interval_width
    monkeypatch.setattr(P, "steep_interval_width", lambda v: 0.99 * real(v))
    with pytest.raises(GradientCheckError, match="lies outside"):
        P.assert_steep_interval(w, b, near_ends)


def test_steep_points_with_w_at_four_are_allowed_only_at_the_centre():
    P.assert_steep_interval(4.0, 2.0, -0.5 + np.linspace(-1e-7, 1e-7, 201))   # |w| = 4: the set is one point, up to rounding
    sig = symgrad.activation("sigmoid")
    assert np.abs(4.0 * sig.grad(4.0 * np.array([-0.5 + 1e-3]) + 2.0))[0] < 1


@pytest.mark.parametrize("sign", [1, -1])
def test_a_gradient_function_just_past_its_contract_fails(sign):
    """The contract is |g − cf| ≤ atol + rtol·|cf| (+ the closed form's own tiny error bound):
    with rtol = 1e-9, atol = 0, a gradient off by 0.5e-9 passes and one off by 2e-9 fails; with
    the defaults (rtol = 1e-5, atol = 1e-8; |∂C/∂b1| ≈ 9e-5 here) one off by 1% fails."""
    net = symgrad.chain(3)
    right = _torch_free_backprop(net)

    def off(scale):
        def fn(params):
            g = right(params)
            g["b1"] = g["b1"] * scale
            return g
        return fn

    p = symgrad.sample(net, seed=0)
    P.assert_gradient_fn(net, p, right)
    P.assert_gradient_fn(net, p, off(1 + sign * 0.5e-9), rtol=1e-9, atol=0.0)
    with pytest.raises(GradientCheckError, match=r"∂C/∂b1"):
        P.assert_gradient_fn(net, p, off(1 + sign * 2e-9), rtol=1e-9, atol=0.0)
    with pytest.raises(GradientCheckError, match=r"∂C/∂b1"):
        P.assert_gradient_fn(net, p, off(1 + sign * 1e-2))


def test_chain_identity_linear_check_catches_a_relative_error_of_1e_12(monkeypatch):
    """Six layers round to ~1e-14; an error of 1e-12 is far past that, so a looser rtol is caught."""
    net, p = _pinned_chain(6, 3.0)
    _shift_grads(monkeypatch, deltas=lambda g: (g.deltas[0] * (1 + 1e-12),) + g.deltas[1:])
    with pytest.raises(GradientCheckError, match="relative error"):
        P.assert_chain_identity(net, p)


TIGHT = sympy.Rational(1, 10**12)


@pytest.mark.parametrize("depth", [1, 3])
def test_dense_bound_fails_a_sup_1e_12_too_small(depth):
    """The rounding allowance of a width-1 network of 3 layers is ~1e-14: 1e-12 is past it."""
    with pytest.raises(GradientCheckError, match="dense bound violated"):
        P.assert_dense_delta_bound(*_pinned_dense(_fake_sigmoid(QUARTER * (1 - TIGHT), "sig_tight"), depth))


def _aligned_dense(act):
    """[2, 2, 2] with z¹ = 0, W² = diag(3, 1) and δ² ∝ e₁ (y₂ = a²₂): ‖δ¹‖ = ¼·‖W²‖₂·‖δ²‖ exactly,
    while the Frobenius norm √10 would be 5% looser."""
    net = symgrad.network([2, 2, 2], act)
    a0 = np.array([0.5, -1.0])
    W1 = np.array([[1.0, 2.0], [-1.0, 0.5]])
    p = {"a0": a0, "y": np.array([0.0, 0.0]), "W1": W1, "b1": -(W1 @ a0), "W2": np.diag([3.0, 1.0]), "b2": np.array([0.3, -0.2])}
    p["y"] = np.array([0.0, float(symgrad.forward(net, p)["a2"][1])])
    return net, p


def test_dense_bound_uses_the_spectral_norm_and_is_tight_for_an_aligned_delta():
    net, p = _aligned_dense("sigmoid")
    norms, bounds = P.dense_delta_bounds(net, p)
    rtol, _ = P._dense_tolerances(net, p, bounds, norms)
    assert abs(norms[0] - bounds[0]) <= rtol * bounds[0]
    with pytest.raises(GradientCheckError, match="layer 1"):
        P.assert_dense_delta_bound(*_aligned_dense(_fake_sigmoid(QUARTER * (1 - TIGHT), "sig_tight2")))


@pytest.mark.parametrize("w, b", [(100.0, 3.0), (-7.5, 0.25)])
def test_steep_interval_assertion_has_only_a_rounding_allowance(monkeypatch, w, b):
    """Points 1e-12 inside the true ends are steep; an interval narrower by a relative 1e-9 must
    reject them, so the allowance is far below 1e-9 of the width."""
    lo, hi = P.steep_interval(w, b)
    pts = np.array([lo + 1e-12, hi - 1e-12])
    P.assert_steep_interval(w, b, pts)
    real = P.steep_interval_width
    monkeypatch.setattr(P, "steep_interval_width", lambda v: (1 - 1e-9) * real(v))
    with pytest.raises(GradientCheckError, match="lies outside"):
        P.assert_steep_interval(w, b, pts)


def test_verify_chain_identity_rejects_a_derivation_with_a_factor_dropped(monkeypatch):
    """Feed the symbolic check a ∂C/∂b1 whose chain lost one factor w_2: it must refuse it."""
    import types

    from symgrad.symbolic.networks import Chain

    real = Chain.gradient

    def dropped(self, name, *a, **k):
        g = real(self, name, *a, **k)
        if name != "b1":
            return g
        w2 = self.symbols["w2"]
        factors = tuple(f for f in g.factors if f != w2)
        assert len(factors) == len(g.factors) - 1
        return types.SimpleNamespace(factors=factors, expr=sympy.Mul(*factors))

    P._verify_identity_cached.cache_clear()
    try:
        assert P.verify_chain_identity(4, "tanh") is not None
        P._verify_identity_cached.cache_clear()
        monkeypatch.setattr(Chain, "gradient", dropped)
        with pytest.raises(GradientCheckError, match="chain identity \\(symbolic\\) fails at depth 4"):
            P.verify_chain_identity(4, "tanh")
    finally:
        P._verify_identity_cached.cache_clear()


def test_a_point_exactly_at_the_end_of_the_steep_interval_passes():
    """Found by the property above: w = 32, a = the computed end 0.10625263794104185 is steep as
    computed; the allowance must include the width formula's own rounding (a few ε at w ≥ 5)."""
    P.assert_steep_interval(32.0, 0.0, [0.10625263794104185, -0.10625263794104185])
    assert P._width_rounding(32.0) < 8 * ULP and P._width_rounding(5.0) < 16 * ULP
    assert P._width_rounding(4.0001) > 1e-10 and P._width_rounding(4 * (1 + 6 * ULP)) > 1   # ill conditioned at 4
