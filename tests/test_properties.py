"""symgrad.properties: each property tested with @given on symgrad's own networks, both on the
closed form (symbolically, derived once outside @given and cached) and numerically."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy
from hypothesis import given, settings, strategies as st

import symgrad
from symgrad import GradientCheckError, InvalidArgument
from symgrad import properties as P
from symgrad import strategies as S

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
    fake = symgrad.custom_activation("2*z", name="double", bound=symgrad.DerivativeBound(
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
    v1, vL = symgrad.evaluate_gradient(g1, params), symgrad.evaluate_gradient(gL, params)
    prod = float(np.prod(P.chain_factors(net, params)[0]))
    assert math.isclose(float(v1), float(vL) * prod, rel_tol=1e-13, abs_tol=1e-300)


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
    assert abs(res.grads["b1"]) <= abs(res.grads["b3"]) / 16 * (1 + 1e-15)


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
    if net.cost.name == "cross_entropy" and net.activations[-1].name != "sigmoid":
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
    np.testing.assert_allclose(norms, bounds, rtol=1e-13, atol=0)


# ---------------------------------------------------------------------------------------------
# 6. |w σ'(wa + b)| ≥ 1
# ---------------------------------------------------------------------------------------------


def test_steep_interval_derivation_is_exact():
    d = P.steep_interval_derivation()
    assert all(d["checks"].values()), d["checks"]
    for w in (4, 5, 100, 1e4):
        assert math.isclose(float(d["width"].subs(d["u"], w)), P.steep_interval_width(w), rel_tol=1e-12)


@NUMERIC
@given(w=st.floats(-300, 300), b=st.floats(-50, 50), t=st.lists(st.floats(-1.5, 1.5), min_size=1, max_size=40))
def test_steep_points_lie_in_an_interval_of_the_derived_width(w, b, t):
    """Sample a around the centre −b/w, on the scale of the interval, and check every steep one."""
    if w == 0:
        return
    half = max(P.steep_interval_width(w), 1e-3) / 2
    a = -b / w + np.array(t) * half
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
