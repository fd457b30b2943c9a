"""Residual networks on the symbolic side (issue #14): ``a_l = a_{l−1} + α_l φ(z_l)``.

Construction and refusals, the factored closed forms (``1 + α w_k φ'(z_k)`` and
``I + α W_lᵀ Σ'(z^l)``, with ``∂C/∂b_j`` led by ``α_j φ'(z_j)``), exact agreement with
``sympy.diff`` of the composed loss, the symbolic-depth Product form, and wrong closed forms
that the exact verification rejects.

The exhaustive grid (depths 1..6 × every built-in activation × every parameter, proved, a few minutes)
runs with ``SYMGRAD_EXHAUSTIVE=1``; the default suite runs a representative part of it.
"""

from __future__ import annotations

import os
from fractions import Fraction

import pytest
import sympy

import symgrad
from symgrad.symbolic.derivation import Gradient
from symgrad.symbolic.verify import verify_gradient

from ._exact import assert_chain_gradient_matches_diff

ALPHA = sympy.Symbol("alpha", real=True)
HALF = sympy.Rational(1, 2)
ACTIVATIONS = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu", "gelu", "softsign", "identity", "selu"]
L = sympy.Symbol("L", integer=True, positive=True)


def _mixed(depth):
    """Residual pattern for a depth: symbolic α, numeric 1/2 and plain layers interleaved."""
    return [(ALPHA, HALF, None)[k % 3] for k in range(depth)]


# --------------------------------------------------------------------------------------------
# Construction
# --------------------------------------------------------------------------------------------


def test_repr_and_residual_tuple():
    net = symgrad.chain(3, "tanh", residual=0.5)
    assert repr(net) == "Chain(depth=3, activation='tanh', loss='quadratic', residual=1/2)"
    assert net.residual == (HALF, HALF, HALF) and net.is_residual
    mixed = symgrad.network([2, 3, 3, 1], "tanh", residual=[None, ALPHA, None])
    assert repr(mixed) == "Network(widths=[2, 3, 3, 1], activation='tanh', loss='quadratic', residual=[None, alpha, None])"
    assert mixed.residual == (None, ALPHA, None)


def test_plain_networks_are_unchanged():
    for net in (symgrad.chain(3), symgrad.chain(3, residual=None), symgrad.chain(3, residual=[None] * 3)):
        assert repr(net) == "Chain(depth=3, activation='sigmoid', loss='quadratic')"
        assert net.residual == (None, None, None) and not net.is_residual
        assert str(net.gradient("b1")) == "Gradient(∂C/∂b1 = sigmoid'(z1)*w2*sigmoid'(z2)*w3*sigmoid'(z3)*(a3 - y))"
        assert sorted(net.symbols) == ["a0", "b1", "b2", "b3", "w1", "w2", "w3", "y"]
    net = symgrad.network([2, 3, 1])
    assert repr(net) == "Network(widths=[2, 3, 1], activation='sigmoid', loss='quadratic')" and not net.is_residual
    assert str(net.gradient("a0")) == "Gradient(∂C/∂a0 = W1.T*diag(sigmoid'(z1))*W2.T*diag(sigmoid'(z2))*(a2 - y))"


@pytest.mark.parametrize("given, exact", [
    (1, sympy.Integer(1)), (-2, sympy.Integer(-2)), (Fraction(1, 3), sympy.Rational(1, 3)), (0.1, sympy.Rational(1, 10)),
    (0.5, HALF), (2.0 ** -60, sympy.Rational("8.673617379884035e-19")), (sympy.Rational(3, 7), sympy.Rational(3, 7)),
    (sympy.Float(0.25), sympy.Rational(1, 4)), (sympy.sqrt(2), sympy.sqrt(2)), (0, sympy.Integer(0)),
])
def test_numeric_alpha_is_kept_exact(given, exact):
    got = symgrad.chain(2, residual=given).residual[0]
    assert got == exact and isinstance(got, sympy.Expr) and got.is_number


def test_a_symbolic_alpha_is_listed_in_symbols_but_is_not_a_parameter():
    net = symgrad.chain(2, residual=ALPHA)
    assert net.symbols["alpha"] is ALPHA and "alpha" not in net.parameters
    dense = symgrad.network([2, 2], residual=ALPHA)
    assert dense.symbols["alpha"] is ALPHA and "alpha" not in dense.parameters


@pytest.mark.parametrize("kwargs, match", [
    (dict(widths=[2, 3, 3, 1], residual=0.5), r"residual layer 1 maps width 2 to width 3"),
    (dict(widths=[2, 2, 3], residual=[None, 1]), r"residual layer 2 maps width 2 to width 3"),
    (dict(widths=[2, 2, 2], residual=[None, "alpha"]), r"strings are not parsed"),
    (dict(widths=[2, 2, 2], residual="__import__('os').system('true')"), r"strings are not parsed"),
    (dict(widths=[2, 2, 2], residual=float("nan")), r"must be finite"),
    (dict(widths=[2, 2, 2], residual=float("inf")), r"must be finite"),
    (dict(widths=[2, 2, 2], residual=True), r"must be a number or a SymPy Symbol"),
    (dict(widths=[2, 2, 2], residual=1j), r"must be a number or a SymPy Symbol"),
    (dict(widths=[2, 2, 2], residual=sympy.I), r"finite real number"),
    (dict(widths=[2, 2, 2], residual=sympy.oo), r"finite real number"),
    (dict(widths=[2, 2, 2], residual=2 * ALPHA), r"not an expression"),
    (dict(widths=[2, 2, 2], residual=sympy.Symbol("w1")), r"taken by the network"),
    (dict(widths=[2, 2, 2], residual=sympy.Symbol("k")), r"taken by the network"),
    (dict(widths=[2, 2, 2], residual=sympy.Symbol("q", imaginary=True)), r"non-real"),
    (dict(widths=[2, 2, 2], residual=[1]), r"residual has 1 entries for 2 layers"),
    (dict(widths=[2, 2, 2], residual=[sympy.Symbol("q"), sympy.Symbol("q", real=True)]), r"two different symbols are named 'q'"),
    (dict(widths=[2, 2, 2], activation=["tanh", "softmax"], loss="log_likelihood", residual=[None, 1]), r"output layer 2 is residual.*output-only"),
    (dict(widths=[2, 2, 2], activation="sigmoid", loss="cross_entropy", residual=[None, 1]), r"loss='cross_entropy' needs the output a_L in \(0, 1\)"),
])
def test_bad_residual_networks_are_refused_with_the_reason(kwargs, match):
    with pytest.raises(symgrad.InvalidArgument, match=match):
        symgrad.network(**kwargs)


def test_chain_refusals():
    with pytest.raises(symgrad.InvalidArgument, match=r"loss='cross_entropy' needs the output a_L in \(0, 1\)"):
        symgrad.chain(3, loss="cross_entropy", residual=0.5)
    with pytest.raises(symgrad.InvalidArgument, match="per-layer list"):
        symgrad.chain(L, residual=[1, 2])
    with pytest.raises(symgrad.InvalidArgument, match="taken by the network"):
        symgrad.chain(L, residual=sympy.Symbol("L"))
    with pytest.raises(symgrad.InvalidArgument, match="cross_entropy"):
        symgrad.chain(L, loss="cross_entropy", residual=ALPHA)
    # A residual hidden layer before a plain sigmoid output keeps the cross-entropy cancellation.
    net = symgrad.chain(3, loss="cross_entropy", residual=[ALPHA, HALF, None])
    assert net.gradient("b3").factors == (net.local_symbols["a3"] - net.symbols["y"],)


# --------------------------------------------------------------------------------------------
# The factored closed forms
# --------------------------------------------------------------------------------------------


def test_chain_factors_are_the_path_product():
    net = symgrad.chain(3, "tanh", residual=ALPHA)
    s, loc = net.symbols, net.local_symbols
    d = [None] + [symgrad.activation("tanh").prime.at(loc["z%d" % k]) for k in (1, 2, 3)]
    step = [None] + [1 + ALPHA * s["w%d" % k] * d[k] for k in (1, 2, 3)]
    out = loc["a3"] - s["y"]
    assert net.gradient("b1").factors == (ALPHA, d[1], step[2], step[3], out)
    assert net.gradient("w2").factors == (loc["a1"], ALPHA, d[2], step[3], out)
    assert net.gradient("b3").factors == (ALPHA, d[3], out)
    assert net.gradient("a0").factors == (step[1], step[2], step[3], out)  # ∂C/∂a_0 = P_0 ∂C/∂a_L
    assert str(net.gradient("b1")) == "Gradient(∂C/∂b1 = alpha*tanh'(z1)*(1 + alpha*w2*tanh'(z2))*(1 + alpha*w3*tanh'(z3))*(a3 - y))"


def test_mixed_chain_factors():
    net = symgrad.chain(3, "tanh", residual=[None, HALF, None])
    s, loc = net.symbols, net.local_symbols
    d = [None] + [symgrad.activation("tanh").prime.at(loc["z%d" % k]) for k in (1, 2, 3)]
    out = loc["a3"] - s["y"]
    assert net.gradient("b1").factors == (d[1], 1 + HALF * s["w2"] * d[2], s["w3"], d[3], out)
    assert net.gradient("b2").factors == (HALF, d[2], s["w3"], d[3], out)
    assert net.gradient("a0").factors == (s["w1"], d[1], 1 + HALF * s["w2"] * d[2], s["w3"], d[3], out)
    # α = 1 leads with φ'(z_j) alone
    one = symgrad.chain(2, "tanh", residual=1)
    assert one.gradient("b1").factors[0] == symgrad.activation("tanh").prime.at(one.local_symbols["z1"])


def test_dense_backward_step_is_identity_plus_alpha_wt_sigma():
    net = symgrad.network([2, 2, 2], "tanh", residual=[ALPHA, 0.5])
    assert str(net.gradient("b1")) == "Gradient(∂C/∂b1 = (alpha*diag(tanh'(z1)))*(I + (1/2)*W2.T*diag(tanh'(z2)))*(a2 - y))"
    assert str(net.gradient("a0")) == "Gradient(∂C/∂a0 = (I + alpha*W1.T*diag(tanh'(z1)))*(I + (1/2)*W2.T*diag(tanh'(z2)))*(a2 - y))"
    assert str(net.gradient("W2")) == "Gradient(∂C/∂W2 = ((1/2)*diag(tanh'(z2)))*(a2 - y)*a1.T)"
    mixed = symgrad.network([2, 3, 3, 1], "relu", residual=[None, 1, None])
    assert str(mixed.gradient("b1")) == ("Gradient(∂C/∂b1 = diag(relu'(z1))*(I + W2.T*diag(relu'(z2)))*W3.T*diag(relu'(z3))*(a3 - y))")


def test_forward_composes_the_skip_connection():
    net = symgrad.chain(2, "tanh", residual=[None, ALPHA])
    fwd, s = net.forward(), net.symbols
    a1 = sympy.tanh(s["w1"] * s["a0"] + s["b1"])
    assert fwd["a1"] == a1
    assert fwd["a2"] == a1 + ALPHA * sympy.tanh(s["w2"] * a1 + s["b2"])
    dense = symgrad.network([2, 2], "tanh", residual=HALF)
    a0 = dense.arrays["a0"]
    assert dense.forward()["a1"] == a0 + HALF * dense.forward()["z1"].applyfunc(sympy.tanh)


def test_a_deep_residual_chain_is_built_in_linear_time_without_composing():
    net = symgrad.chain(5_000, "tanh", residual=ALPHA)
    g = net.gradient("b1")
    assert len(g.factors) == 5_002 and g.factors[0] is ALPHA


# --------------------------------------------------------------------------------------------
# Exact agreement with sympy.diff of the composed loss
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_every_activation_verifies_exactly_in_a_mixed_chain(act):
    net = symgrad.chain(3, act, residual=[ALPHA, None, HALF])
    C = net.cost()
    for name in net.parameters + ("a0",):
        assert_chain_gradient_matches_diff(net, name, C, seed=3)


@pytest.mark.parametrize("act, residual", [("tanh", ALPHA), ("sigmoid", HALF), ("relu", "mixed")])
def test_depths_1_to_6_every_parameter_is_proved(act, residual):
    for depth in range(1, 7):
        net = symgrad.chain(depth, act, residual=_mixed(depth) if residual == "mixed" else residual)
        for name in net.parameters + ("a0",):
            res = verify_gradient(net, name, seconds=60)
            assert res.status == "exact match", (depth, name, res)


@pytest.mark.parametrize("widths, act, residual", [
    ([2, 2, 2], "tanh", [ALPHA, HALF]),
    ([2, 3, 3, 1], "relu", [None, ALPHA, None]),
    ([1, 1, 1], "softplus", 2),
])
def test_dense_residual_networks_are_proved_for_every_parameter(widths, act, residual):
    net = symgrad.network(widths, act, residual=residual)
    for name in net.parameters + ("a0",):
        res = verify_gradient(net, name, seconds=60)
        assert res.status == "exact match", (name, res)


def test_a_deeper_dense_residual_network_is_proved():
    net = symgrad.network([2, 2, 2, 2], "sigmoid", residual=[HALF, None, ALPHA])
    for name in ("W2[1,0]", "b2", "W3", "b3"):
        res = verify_gradient(net, name, seconds=60)
        assert res.status == "exact match", (name, res)


def test_cross_entropy_behind_residual_hidden_layers_and_alpha_zero_verify():
    net = symgrad.chain(3, "sigmoid", "cross_entropy", residual=[ALPHA, HALF, None])
    for name in ("b1", "w2", "b3", "a0"):
        assert verify_gradient(net, name).ok, name
    zero = symgrad.chain(2, "tanh", residual=[0, None])  # α = 0: layer 1 is the identity, w1 and b1 do not matter
    assert verify_gradient(zero, "b1").ok and verify_gradient(zero, "a0").ok
    assert zero.gradient("b1").doit() == 0


@pytest.mark.skipif(not os.environ.get("SYMGRAD_EXHAUSTIVE"), reason="exhaustive grid (a few minutes): set SYMGRAD_EXHAUSTIVE=1")
@pytest.mark.slow
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_exhaustive_depths_1_to_6_every_activation_every_parameter(act):
    """Proved (verify_gradient's exact match), not only sampled, for both residual patterns."""
    for depth in range(1, 7):
        for residual in (ALPHA, _mixed(depth)):
            net = symgrad.chain(depth, act, residual=residual)
            for name in net.parameters + ("a0",):
                res = verify_gradient(net, name, seconds=120)
                assert res.status == "exact match", (depth, residual, name, res)


# --------------------------------------------------------------------------------------------
# Wrong closed forms are rejected (the checks are not vacuous)
# --------------------------------------------------------------------------------------------


def _wrong(net, name, factors):
    return Gradient(net, name, factors, net.gradient(name)._entry)


def test_wrong_chain_closed_forms_are_mismatches():
    net = symgrad.chain(3, "tanh", residual=ALPHA)
    s, loc = net.symbols, net.local_symbols
    g = net.gradient("b1")
    d2 = symgrad.activation("tanh").prime.at(loc["z2"])
    wrong = {
        "the issue's form without α_j": g.factors[1:],
        "1 − α w φ'": g.factors[:2] + (1 - ALPHA * s["w2"] * d2,) + g.factors[3:],
        "α w φ' without the skip's 1": g.factors[:2] + (ALPHA * s["w2"] * d2,) + g.factors[3:],
    }
    for why, factors in wrong.items():
        assert verify_gradient(net, _wrong(net, "b1", factors)).status == "mismatch", why


def test_wrong_dense_closed_forms_are_mismatches():
    net = symgrad.network([2, 2, 2], "tanh", residual=[ALPHA, HALF])
    g = net.gradient("b1")
    swapped = (g.factors[1], g.factors[0]) + g.factors[2:]  # (I + α W2ᵀ Σ'(z2)) before α Σ'(z1)
    assert verify_gradient(net, _wrong(net, "b1", swapped)).status == "mismatch"
    step = g.factors[1]
    wt_sigma = step.args[1]
    transposed = sympy.MatAdd(sympy.Identity(2), sympy.MatMul(HALF, wt_sigma.args[-1], wt_sigma.args[-2]))  # Σ' W2ᵀ
    assert verify_gradient(net, _wrong(net, "b1", (g.factors[0], transposed, g.factors[2]))).status == "mismatch"


# --------------------------------------------------------------------------------------------
# Symbolic depth
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu", "gelu"])
@pytest.mark.parametrize("alpha", [ALPHA, HALF, 1])
def test_symbolic_depth_equals_every_concrete_residual_chain(act, alpha):
    for kind in "bw":
        sg = symgrad.chain(L, act, residual=alpha).gradient(kind)
        for depth in range(1, 7):
            net = symgrad.chain(depth, act, residual=alpha)
            for j in range(1, depth + 1):
                assert sg.at(depth, layer=j) == sympy.Mul(*net.gradient("%s%d" % (kind, j)).factors), (kind, depth, j)


def test_symbolic_depth_prints_the_residual_product():
    sc = symgrad.chain(L, "tanh", residual=ALPHA)
    assert repr(sc) == "SymbolicChain(depth=L, activation='tanh', loss='quadratic', residual=alpha)"
    g = sc.gradient("b")
    prods = [f for f in g.factors if isinstance(f, sympy.Product)]
    assert len(prods) == 1 and prods[0].function == 1 + ALPHA * sc.w[sc.k] * symgrad.activation("tanh").prime(sc.z[sc.k])
    assert g.factors[0] == ALPHA


def test_the_readme_residual_example_runs():
    """The README's residual example is a doctest: what it shows is what symgrad prints."""
    import doctest
    import pathlib

    text = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- residual-example:start -->")[1].split("<!-- residual-example:end -->")[0]
    block = block.replace("```python", "").replace("```", "")
    test = doctest.DocTestParser().get_doctest(block, {}, "README residual", "README.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0 and runner.tries >= 8


def test_the_shared_sequence_is_the_residual_one_whichever_is_asked_first():
    """The numeric side reads _chain_sequence/_dense_sequence; on a fresh residual network they
    must give the residual layout's sequence, of which every gradient's factors are a tail."""
    from symgrad.symbolic.derivation import _chain_sequence, _dense_sequence

    net = symgrad.chain(3, "tanh", residual=[ALPHA, None, HALF])
    seq = _chain_sequence(net)
    for name in net.parameters + ("a0",):
        fs = net.gradient(name).factors
        assert any(fs[lead:] == seq[len(seq) - len(fs) + lead:] for lead in range(4)), name
    dense = symgrad.network([2, 2, 2], "tanh", residual=[HALF, ALPHA])
    dseq = _dense_sequence(dense)
    assert dseq[0] == dense.gradient("a0").factors[0] and len(dseq) == 3


def test_gelu_and_selu_residual_chains_are_proved_within_the_budget():
    """Factorising a residual chain's gradient (a sum over the layers below in every a_l) is slow
    for GELU; the exact check proves it as a rational function of the function applications
    instead (depth 5 ran past the 60 s budget before).  SELU's piecewise φ' is one generator,
    scaled to a first-branch coefficient of 1, so its plain chains are proved now too."""
    res = verify_gradient(symgrad.chain(5, "gelu", residual=ALPHA), "b1", seconds=60)
    assert res.status == "exact match" and "rational functions of the function applications" in res.reason, res
    for net in (symgrad.chain(4, "selu", residual=[ALPHA, None, HALF, None]), symgrad.chain(3, "selu")):
        for name in ("b1", "w2", "a0"):
            assert verify_gradient(net, name).ok, (net, name)
    # identity: SymPy distributes z_k into the next layer, so both sides are composed back
    assert verify_gradient(symgrad.chain(4, "identity", residual=_mixed(4)), "w1").ok
