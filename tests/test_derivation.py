"""Closed-form gradients: exact agreement with sympy.diff of the composed loss, the literature's
factored form, symbolic depth, and linear-time construction."""

from __future__ import annotations

import pytest
import sympy

import symgrad
from symgrad.spec.activations import sigmoid

from ._exact import assert_chain_gradient_matches_diff, assert_exactly_equal, is_exactly_zero, random_rationals

ACTIVATIONS = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu", "gelu", "softsign", "identity"]


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5, 6])
def test_chain_gradient_equals_sympy_diff_for_every_parameter(act, depth):
    """gradient(p).explicit() == sympy.diff(net.cost(), p) for every parameter (and the input),
    exactly at random rational points."""
    net = symgrad.chain(depth, activation=act)
    C = net.cost()
    for name in net.parameters + ("a0",):
        assert_chain_gradient_matches_diff(net, name, C, seed=depth)


@pytest.mark.parametrize("act", ["sigmoid", "gelu", "softsign", "identity"])
def test_exact_comparison_detects_a_wrong_closed_form(act):
    """The exact comparison is not vacuous: a closed form off by a factor 1001/1000, or with
    a weight dropped, is rejected."""
    net = symgrad.chain(3, activation=act)
    C = net.cost()
    g = net.gradient("b1")
    for wrong in (
        symgrad.Gradient(net, "b1", g.factors + (sympy.Rational(1001, 1000),)),
        symgrad.Gradient(net, "b1", g.factors[:1] + g.factors[2:]),  # w_2 dropped
    ):
        with pytest.raises(AssertionError):
            original = net.gradient
            net.gradient = lambda name, _w=wrong: _w
            try:
                assert_chain_gradient_matches_diff(net, "b1", C)
            finally:
                net.gradient = original


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_sigmoid_chain_gradient_equals_sympy_diff_symbolically(depth):
    """For sigmoid the equality holds as an identity in all symbols, not only at points."""
    net = symgrad.chain(depth)
    C = net.cost()
    for name in net.parameters:
        assert is_exactly_zero(net.gradient(name).explicit() - sympy.diff(C, net.symbols[name]))


@pytest.mark.parametrize("hidden", ["sigmoid", "tanh", "relu", "gelu"])
@pytest.mark.parametrize("depth", [1, 3, 5])
def test_cross_entropy_chain_gradient_equals_sympy_diff(hidden, depth):
    """Cross-entropy with a sigmoid output (so 0 < a_L < 1) behind any hidden activation."""
    net = symgrad.chain(depth, activation=[hidden] * (depth - 1) + ["sigmoid"], loss="cross_entropy")
    C = net.cost()
    for name in net.parameters:
        assert_chain_gradient_matches_diff(net, name, C, seed=depth)


def test_cross_entropy_with_sigmoid_output_cancels_sigma_prime():
    """∂C/∂z_L = a_L − y: the output σ' cancels, the hidden factors remain."""
    net = symgrad.chain(3, loss="cross_entropy")
    loc, s = net.local_symbols, net.symbols
    g = net.gradient("b3")
    assert g.factors == (loc["a3"] - s["y"],)
    g1 = net.gradient("b1")
    sig = net.activation.prime
    assert g1.factors == (sig(loc["z1"]), s["w2"], sig(loc["z2"]), s["w3"], loc["a3"] - s["y"])
    zL = sympy.Symbol("zL", real=True)
    y = s["y"]
    C = net.loss.cost(sigmoid(zL), y)
    assert sympy.expand(sympy.diff(C, zL)) == sigmoid(zL) - y


def test_nielsen_chain_has_the_literature_factors_in_chain_order():
    """∂C/∂b_1 = σ'(z_1) w_2 σ'(z_2) w_3 σ'(z_3) w_4 σ'(z_4) ∂C/∂a_4 (Nielsen, three hidden layers)."""
    net = symgrad.chain(4)
    s, loc, sp = net.symbols, net.local_symbols, net.activation.prime
    g = net.gradient("b1")
    assert g.factors == (
        sp(loc["z1"]), s["w2"], sp(loc["z2"]), s["w3"], sp(loc["z3"]), s["w4"], sp(loc["z4"]), loc["a4"] - s["y"],
    )
    assert sympy.sstr(g.expr, order="none") == "sigmoid'(z1)*w2*sigmoid'(z2)*w3*sigmoid'(z3)*w4*sigmoid'(z4)*(a4 - y)"
    assert g.latex() == (
        r"\frac{\partial C}{\partial b_{1}} = \sigma'\mathopen{}\left(z_{1}\right) w_{2} \sigma'\mathopen{}\left(z_{2}\right) w_{3} "
        r"\sigma'\mathopen{}\left(z_{3}\right) w_{4} \sigma'\mathopen{}\left(z_{4}\right) \left(a_{4} - y\right)"
    )


def test_weight_gradient_has_the_previous_activation_in_front():
    net = symgrad.chain(3)
    s, loc = net.symbols, net.local_symbols
    assert net.gradient("w1").factors[0] == s["a0"]
    assert net.gradient("w3").factors[0] == loc["a2"]
    assert net.gradient("w3").factors[1:] == net.gradient("b3").factors


def test_sigma_prime_doit_gives_the_closed_form_sigma_one_minus_sigma():
    net = symgrad.chain(2)
    z1 = net.local_symbols["z1"]
    assert net.activation.prime(z1).doit() == sigmoid(z1) * (1 - sigmoid(z1))
    assert net.gradient("b2").doit() == sigmoid(net.local_symbols["z2"]) * (1 - sigmoid(net.local_symbols["z2"])) * (
        net.local_symbols["a2"] - net.symbols["y"]
    )


def test_per_layer_activations_are_used_layer_by_layer():
    net = symgrad.chain(3, activation=["tanh", "sigmoid", "relu"])
    names = [f.activation.name for f in net.gradient("b1").factors[::2][:3]]  # one ActivationPrime class, keyed by activation
    assert names == ["tanh", "sigmoid", "relu"]
    C = net.cost()
    syms = list(net.symbols.values())
    for name in net.parameters:
        assert_exactly_equal(net.gradient(name).explicit(), sympy.diff(C, net.symbols[name]), syms, points=1)


@pytest.mark.parametrize(
    "widths,act,loss",
    [
        ([2, 3, 1], "sigmoid", "quadratic"),
        ([3, 2, 2], "tanh", "quadratic"),
        ([1, 3, 3, 2], "sigmoid", "quadratic"),
        ([2, 2, 3, 1], ["relu", "tanh", "sigmoid"], "quadratic"),
        ([2, 3, 2], "sigmoid", "cross_entropy"),
        ([2, 2, 1], "softplus", "cross_entropy"),
    ],
)
def test_dense_gradient_equals_sympy_diff_for_every_entry(widths, act, loss):
    net = symgrad.network(widths, activation=act, loss=loss)
    C = net.cost()
    syms = list(net.symbols.values())
    pt = random_rationals(syms, 7)
    for y in net.arrays["y"]:
        pt[y] = sympy.Rational(1, 4)  # a valid target for cross-entropy
    C_pt = {}
    for name in net.parameters + ("a0",):
        G = net.gradient(name).explicit()
        A = net.arrays[name]
        assert G.shape == A.shape
        for idx in range(len(A)):
            ref = C_pt.setdefault(A[idx], sympy.diff(C, A[idx]).xreplace(pt))
            assert is_exactly_zero(G[idx].xreplace(pt) - ref), (name, idx)


def test_dense_entrywise_names_address_single_weights():
    net = symgrad.network([2, 3, 2])
    C = net.cost()
    syms = list(net.symbols.values())
    g = net.gradient("W2[1,0]")
    assert_exactly_equal(g.explicit(), sympy.diff(C, net.symbols["W2[1,0]"]), syms, points=1)
    assert_exactly_equal(net.gradient("b1[2]").explicit(), sympy.diff(C, net.symbols["b1[2]"]), syms, points=1)
    assert g.explicit() == net.gradient("W2").explicit()[1, 0]


def test_dense_delta_is_sigma_prime_w_transpose_product():
    """δ^1 = Σ'(z^1)(W^2)ᵀ Σ'(z^2) ∇_a C and ∂C/∂W^1 = δ^1 (a^0)ᵀ, as matrix expressions."""
    net = symgrad.network([2, 3, 1])
    g = net.gradient("b1")
    assert sympy.sstr(g.expr, order="none") == "diag(sigmoid'(z1))*W2.T*diag(sigmoid'(z2))*(a2 - y)"
    gw = net.gradient("W1")
    assert gw.factors[:-1] == g.factors
    assert str(gw.factors[-1]) == "a0.T"
    assert gw.expr.shape == (3, 2)


def test_dense_local_form_is_consistent_with_explicit():
    net = symgrad.network([2, 2, 1])
    local = net.gradient("b1").doit()
    fwd = net.forward()
    mapping = {}
    for l in (1, 2):
        for i in range(net.widths[l]):
            mapping[net.local_symbols["z%d[%d]" % (l, i)]] = fwd["z%d" % l][i]
            mapping[net.local_symbols["a%d[%d]" % (l, i)]] = fwd["a%d" % l][i]
    assert (local.xreplace(mapping) - net.gradient("b1").explicit()).applyfunc(sympy.expand).is_zero_matrix


# --------------------------------------------------------------------------------------------
# Symbolic depth
# --------------------------------------------------------------------------------------------

L = sympy.Symbol("L", integer=True, positive=True)


@pytest.mark.parametrize("kind", ["b", "w"])
@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu"])
def test_symbolic_depth_substituted_equals_concrete_depth(kind, act):
    sg = symgrad.chain(L, activation=act).gradient(kind)
    for depth in range(1, 7):
        net = symgrad.chain(depth, activation=act)
        for j in range(1, depth + 1):
            assert sg.at(depth, layer=j) == sympy.Mul(*net.gradient("%s%d" % (kind, j)).factors)


def test_symbolic_depth_product_doit_matches_concrete():
    """SymPy's own Product.doit (not only symgrad's expansion) gives the same concrete product."""
    sc = symgrad.chain(L)
    sg = sc.gradient("b", layer=1)
    net = symgrad.chain(4)
    expanded = sg.expr.xreplace({L: 4}).replace(lambda e: isinstance(e, sympy.Product), lambda p: p.doit(deep=False))
    expected = sg.at(4)
    mapping = {}
    for k in range(1, 5):
        mapping[sc.w[k]] = net.symbols["w%d" % k]
        mapping[sc.z[k]] = net.local_symbols["z%d" % k]
        mapping[sc.a[k]] = net.local_symbols["a%d" % k]
    mapping[sc.y] = net.symbols["y"]
    assert expanded.xreplace(mapping) == expected


def test_symbolic_depth_prints_the_product_form():
    sg = symgrad.chain(L).gradient("b")
    tex = sg.latex()
    assert r"\prod_{k=j + 1}^{L} {w}_{k} \sigma'\mathopen{}\left({z}_{k}\right)" in tex
    assert tex.startswith(r"\frac{\partial C}{\partial b_{j}} = \sigma'\mathopen{}\left({z}_{j}\right)")


def test_symbolic_depth_cross_entropy_sigmoid_matches_concrete_below_the_output():
    sg = symgrad.chain(L, loss="cross_entropy").gradient("b")
    for depth in range(2, 6):
        net = symgrad.chain(depth, loss="cross_entropy")
        for j in range(1, depth):
            assert sg.at(depth, layer=j) == sympy.Mul(*net.gradient("b%d" % j).factors)


def test_symbolic_depth_cross_entropy_sigmoid_at_the_output_layer_is_a_minus_y():
    """The reported fault: at j = L the symbolic form gave w5·σ'(z5)·(a5 − y)."""
    net = symgrad.chain(5, loss="cross_entropy")
    got = symgrad.chain(L, loss="cross_entropy").gradient("b").at(5, layer=5)
    a5, y = net.local_symbols["a5"], net.symbols["y"]
    assert got == a5 - y
    assert symgrad.chain(L, loss="cross_entropy").gradient("b", layer=5).at(5) == a5 - y


_DISTINCT_ACTIVATIONS = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu", "gelu", "softsign", "identity"]


@pytest.mark.parametrize("loss", symgrad.BUILTIN_LOSSES)
@pytest.mark.parametrize("act", _DISTINCT_ACTIVATIONS)
def test_symbolic_depth_equals_every_concrete_chain_at_every_layer(act, loss):
    """Exact (structural) equality of the substituted symbolic form and the concrete closed form,
    for every loss × built-in activation × depth 1..6 × layer × kind; the concrete forms are
    themselves checked against sympy.diff of the composed loss elsewhere in this file."""
    for kind in "bw":
        sg = symgrad.chain(L, act, loss).gradient(kind)
        for depth in range(1, 7):
            net = symgrad.chain(depth, act, loss)
            for j in range(1, depth + 1):
                assert sg.at(depth, layer=j) == sympy.Mul(*net.gradient("%s%d" % (kind, j)).factors), (kind, depth, j)


@pytest.mark.parametrize("call, match", [
    (lambda sg: sg.at(5, layer=0), "outside 1..5"),
    (lambda sg: sg.at(5, layer=-1), "outside 1..5"),
    (lambda sg: sg.at(5, layer=6), "outside 1..5"),
    (lambda sg: sg.at(5, layer=2.0), "must be an int"),
    (lambda sg: sg.at(5, layer=True), "must be an int"),
    (lambda sg: sg.at(5, layer="2"), "must be an int"),
    (lambda sg: sg.at(0, layer=1), "at least 1"),
    (lambda sg: sg.at("5", layer=1), "positive int"),
])
def test_symbolic_depth_at_validates_every_index(call, match):
    with pytest.raises(symgrad.InvalidArgument, match=match):
        call(symgrad.chain(L).gradient("b"))


@pytest.mark.parametrize("layer, match", [
    (0, "at least 1"), (-3, "at least 1"), (True, "bool"), (1.5, "positive int"), ("1", "strings are not parsed"),
    ("__import__('os').system('true') or 1", "strings are not parsed"),
    (sympy.Symbol("n", negative=True), "positive integer symbol"),
    (sympy.Symbol("x", integer=False), "positive integer symbol"),
])
def test_symbolic_gradient_layer_is_validated(layer, match):
    with pytest.raises(symgrad.InvalidArgument, match=match):
        symgrad.chain(L).gradient("b", layer=layer)


def test_symbolic_gradient_with_a_concrete_layer_checks_it_against_the_depth():
    sg = symgrad.chain(L).gradient("w", layer=4)
    with pytest.raises(symgrad.InvalidArgument, match="outside 1..3"):
        sg.at(3)
    with pytest.raises(symgrad.InvalidArgument, match="already for layer 4"):
        sg.at(5, layer=2)
    assert sg.at(4) == sympy.Mul(*symgrad.chain(4).gradient("w4").factors)


@pytest.mark.parametrize("kind", ["", "W", "bb", 1, None])
def test_symbolic_gradient_kind_is_validated(kind):
    with pytest.raises(symgrad.InvalidArgument, match="must be 'w' or 'b'"):
        symgrad.chain(L).gradient(kind)


# --------------------------------------------------------------------------------------------
# Cost: never compose, never simplify
# --------------------------------------------------------------------------------------------


def test_deep_chain_gradients_never_simplify_or_compose(monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("derivation called a forbidden global operation")

    for name in ("simplify", "expand", "diff", "together", "cancel"):
        monkeypatch.setattr(sympy, name, forbidden)
    monkeypatch.setattr(symgrad.symbolic.Chain, "forward", forbidden)
    net = symgrad.chain(2000)
    g = net.gradient("w1")
    assert len(g.factors) == 2 * 2000 + 1
    assert len(g.expr.args) == 2 * 2000 + 1


def test_all_gradients_share_one_factor_sequence():
    """Gradients of one network reuse the per-layer factor objects instead of rebuilding them."""
    net = symgrad.chain(50)
    g1, g2 = net.gradient("b1"), net.gradient("b30")
    assert g2.factors[0] is g1.factors[2 * 29]
    assert all(a is b for a, b in zip(g2.factors, g1.factors[58:]))


def test_real_symbol_fast_path_matches_sympy_symbols():
    net = symgrad.chain(3)
    for name, sym in list(net.symbols.items()) + list(net.local_symbols.items()):
        ref = sympy.Symbol(name, real=True)
        assert sym == ref and hash(sym) == hash(ref)
        assert sym.is_real and sym.is_positive is None and (sym ** 2).is_nonnegative
    assert net.activation.prime.at(ref) == net.activation.prime(ref)


def test_symbolic_depth_latex_states_the_product_and_bound_that_the_form_has():
    """The rendered product and bound follow the factors: below a cancelling output (cross-entropy
    with σ) the product runs k = j..L−1 over φ'(z_k) w_{k+1}, L − j factors."""
    from symgrad.render.latex import _symbolic_derivation

    ce = _symbolic_derivation(symgrad.chain(L, loss="cross_entropy").gradient("b"))
    assert r"\prod_{k=j}^{L - 1} \sigma'(z_{k})\, w_{k+1}\;\left(a_{L} - y\right)" in ce
    assert r"\bigl(\frac{\max_{k}|w_{k}|}{4}\bigr)^{L - j}" in ce and r"\le \frac{|w_{k+1}|}{4}" in ce
    quad = _symbolic_derivation(symgrad.chain(L).gradient("b"))
    assert r"\prod_{k=j + 1}^{L} w_{k}\, \sigma'(z_{k})\;\left(a_{L} - y\right)" in quad
    assert r"\bigl(\frac{\max_{k}|w_{k}|}{4}\bigr)^{L - j}" in quad and r"\le \frac{|w_{k}|}{4}" in quad


@pytest.mark.parametrize("name", ["b１", "w１", "b01", "w04", "b0", "w0", "a00", "a1", "ｂ1", "b1[0]"])
def test_chain_parameter_names_are_ascii_and_canonical(name):
    """One spelling per parameter: ASCII digits (\\d would take the full-width '１'), no leading zeros."""
    with pytest.raises(symgrad.InvalidArgument, match="unknown parameter"):
        symgrad.chain(4).gradient(name)


@pytest.mark.parametrize("name", [" b1", "b1 ", "w1\n", "\ta0"])
def test_parameter_names_with_surrounding_whitespace_are_refused(name):
    with pytest.raises(symgrad.InvalidArgument, match="surrounding whitespace"):
        symgrad.chain(3).gradient(name)
    with pytest.raises(symgrad.InvalidArgument, match="surrounding whitespace"):
        symgrad.network([2, 3, 1]).gradient("W1[0,0] " if name.endswith(" ") else " b1")


@pytest.mark.parametrize("name", ["W1[０,0]", "W1[00,0]", "W１", "b01", "W1[0,01]", "b1[0,0]x", "W1[0, 1]"])
def test_dense_parameter_names_are_ascii_and_canonical(name):
    with pytest.raises(symgrad.InvalidArgument):
        symgrad.network([2, 3, 1]).gradient(name)


@pytest.mark.parametrize("depth", [sympy.Symbol("L", negative=True), sympy.Symbol("L", integer=False), sympy.Symbol("L", nonpositive=True)])
def test_symbolic_depth_must_not_be_declared_non_positive_or_non_integer(depth):
    with pytest.raises(symgrad.InvalidArgument, match="positive integer"):
        symgrad.chain(depth)
