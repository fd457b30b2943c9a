"""Theorem 18 as a Hypothesis property: in a residual chain whose every factor obeys
``|α w_k φ'(z_k)| ≤ r < 1``, the path product ``P_j = Π_{k>j} (1 + α w_k φ'(z_k))`` lies in
``[(1 − r)^{L−j}, (1 + r)^{L−j}]``, while a plain chain's ``Π w_k φ'(z_k)`` can be ``r^{L−j}``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy
from hypothesis import given, settings, strategies as st

import symgrad
from symgrad import GradientCheckError, InvalidArgument
from symgrad.testing import properties as P

ACTS = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu", "gelu", "softsign", "identity", "selu"]
ALPHA = sympy.Symbol("alpha", real=True)


@st.composite
def residual_chains(draw):
    """A residual chain with every factor |α w_k φ'(z_k)| ≤ r: |w_k| ≤ 0.999 r / (|α| sup|φ'|)."""
    depth = draw(st.integers(1, 40))
    act = draw(st.sampled_from(ACTS))
    rate = draw(st.floats(0.01, 0.99))
    alpha = draw(st.floats(0.05, 3.0)) * draw(st.sampled_from([-1.0, 1.0]))
    symbolic = draw(st.booleans())
    net = symgrad.chain(depth, act, residual=ALPHA if symbolic else alpha)
    exact_alpha = float(net.residual[0]) if not symbolic else alpha
    sup = float(symgrad.activation(act).bound.sup)
    wmax = 0.999 * rate / (abs(exact_alpha) * sup)
    params = {"a0": draw(st.floats(-3, 3))}
    for k in range(1, depth + 1):
        params["w%d" % k] = draw(st.floats(-wmax, wmax))
        params["b%d" % k] = draw(st.floats(-3, 3))
    if symbolic:
        params["alpha"] = alpha
    return net, params, rate


@settings(deadline=None, max_examples=200)
@given(residual_chains())
def test_the_residual_path_product_is_bounded_on_both_sides(case):
    net, params, rate = case
    P.assert_residual_path_bounds(net, params, rate=rate)
    # and directly, in linear space, where it does not underflow (depth ≤ 40, r ≤ 0.99)
    t = P.residual_path_factors(net, params)
    for j in range(net.depth):
        n = net.depth - j
        prod = float(np.prod(1 + t[j:]))
        slack = 8 * n * np.finfo(float).eps
        assert (1 - rate) ** n * (1 - slack) <= prod <= (1 + rate) ** n * (1 + slack)


@settings(deadline=None, max_examples=100)
@given(depth=st.integers(2, 60), rate=st.floats(0.01, 0.49))
def test_a_plain_chain_can_shrink_as_r_to_the_depth_where_a_residual_one_cannot(depth, rate):
    """The same factor r per layer: a plain identity chain's path is r^{L−1} (assert_vanishing's
    bound is attained), while a residual chain with factors −r stays above (1 − r)^{L} > r^{L}."""
    plain = symgrad.chain(depth, "identity")
    p = {"a0": 0.5, "y": 0.0, **{"w%d" % k: rate for k in range(1, depth + 1)}, **{"b%d" % k: 0.0 for k in range(1, depth + 1)}}
    P.assert_vanishing(plain, symgrad.sample(plain, value=p), rate=rate)
    factors = P.chain_factors(plain, symgrad.sample(plain, value=p))[0]
    assert math.isclose(float(np.prod(factors)), rate ** (depth - 1), rel_tol=4 * depth * np.finfo(float).eps)
    res = symgrad.chain(depth, "identity", residual=1)
    q = {"a0": 0.5, **{"w%d" % k: -rate for k in range(1, depth + 1)}, **{"b%d" % k: 0.0 for k in range(1, depth + 1)}}
    P.assert_residual_path_bounds(res, q, rate=rate)  # attained: every factor is 1 − r exactly
    t = P.residual_path_factors(res, q)
    assert np.all(t == -rate)
    assert (1 - rate) ** depth > rate ** depth


def test_the_lower_bound_is_attained_and_a_tighter_one_would_fail():
    """At t_k = −r the product is (1 − r)^n exactly: the check passes with its rounding
    allowance, and the same product against a bound one factor tighter, (1 − r)^{n−1}, is
    outside it (so the allowance is far below one factor)."""
    rate, depth = 0.3, 50
    net = symgrad.chain(depth, "identity", residual=1)
    q = {"a0": 0.0, **{"w%d" % k: -rate for k in range(1, depth + 1)}, **{"b%d" % k: 0.0 for k in range(1, depth + 1)}}
    P.assert_residual_path_bounds(net, q, rate=rate)
    logp = float(np.sum(np.log1p(P.residual_path_factors(net, q))))
    assert logp < (depth - 1) * math.log1p(-rate) - 0.1


def test_premise_and_input_errors():
    net = symgrad.chain(2, "tanh", residual=ALPHA)
    p = {"w1": 3.0, "w2": 0.1, "b1": 0.0, "b2": 0.0, "a0": 0.0, "alpha": 0.5}
    with pytest.raises(InvalidArgument, match=r"premise fails: \|α_1 w1 φ'\(z1\)\| = 1.5 > rate = 0.5"):
        P.assert_residual_path_bounds(net, p, rate=0.5)
    with pytest.raises(InvalidArgument, match="no value for 'alpha'"):
        P.residual_path_factors(net, {k: v for k, v in p.items() if k != "alpha"})
    with pytest.raises(InvalidArgument, match="must be < 1"):
        P.assert_residual_path_bounds(net, p, rate=1.0)
    with pytest.raises(InvalidArgument, match="layer 2 of .* is plain"):
        P.residual_path_factors(symgrad.chain(2, residual=[1, None]), p)
    with pytest.raises(InvalidArgument, match="must be finite"):
        P.residual_path_factors(net, {**p, "w2": float("nan")})
    with pytest.raises(InvalidArgument, match="residual chain"):
        P.residual_path_factors(symgrad.network([1, 1]), p)


def test_a_violated_bound_is_reported(monkeypatch):
    """The error path: a path product outside the bound (here forced by a wrong log1p) names j."""
    net = symgrad.chain(3, "tanh", residual=0.5)
    p = {"w1": 0.4, "w2": -0.8, "w3": 1.0, "b1": 0.1, "b2": 0.0, "b3": -0.3, "a0": 0.5}
    monkeypatch.setattr(P.np, "log1p", lambda x: 2 * np.log(1 + np.asarray(x)) - 1)
    with pytest.raises(GradientCheckError, match="residual path bound violated at j = "):
        P.assert_residual_path_bounds(net, p, rate=0.5)


def test_the_rounding_allowance_is_far_below_a_part_in_a_billion(monkeypatch):
    """At the attained lower bound (every t_k = −r) the log of the path product sits on the
    bound; moving each log1p by 1e-10 (5e-9 in all over 50 layers) must be reported, so the
    allowance from the error analysis is not loose."""
    rate, depth = 0.3, 50
    net = symgrad.chain(depth, "identity", residual=1)
    q = {"a0": 0.0, **{"w%d" % k: -rate for k in range(1, depth + 1)}, **{"b%d" % k: 0.0 for k in range(1, depth + 1)}}
    real = np.log1p
    monkeypatch.setattr(P.np, "log1p", lambda x: real(x) - 1e-10)
    with pytest.raises(GradientCheckError, match="residual path bound violated at j = 0"):
        P.assert_residual_path_bounds(net, q, rate=rate)
