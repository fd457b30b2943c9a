"""Theorems 3–5, 7, 8 and 14: the chain rule through every depth, and what its product of
factors w σ'(z) does — vanish, explode, saturate, blow up under a large initialisation; ReLU
factors and dead units."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import sympy
from sympy import Rational as Q, exp, tanh

from symgrad import numeric as _numeric
from symgrad.spec.activations import activation, sigmoid, z
from symgrad.symbolic import build as _build
from symgrad.proof.engine import Certificate, Enclosure, ExactValue, Hypothesis, Identity, Implies, Induction, Solve, Theorem
from symgrad.proof.catalogue._common import SIG, Ai, L, Wi, Zi, chain_forward, dC_da, hyp, j, k, n, settings, sp, y, zp
from symgrad.proof.catalogue.activations import _sigma_upper

__all__ = ["t_chain", "t_vanishing", "t_exploding", "t_saturation", "t_large_init", "t_relu"]


# =============================================================================================
# 3. Nielsen's chain, every depth
# =============================================================================================


def _G(jj, LL):
    """σ'(z_j) Π_{k=j+1}^{L} w_k σ'(z_k) · ∂C/∂a_L."""
    return sp(Zi[jj]) * sympy.Product(Wi[k] * sp(Zi[k]), (k, jj + 1, LL)) * dC_da(LL)


def _local_rule(sign=1):
    """∂C/∂a_l = w_{l+1} σ'(z_{l+1}) ∂C/∂a_{l+1} for one added layer, by SymPy's chain rule."""
    C = sympy.Function("C")
    w, a, b = sympy.symbols("w a b", real=True)
    x = sympy.Dummy("x")
    u = w * a + b
    return Identity(sympy.Derivative(C(sigmoid(u)), a), sign * w * sp(u) * sympy.Subs(sympy.Derivative(C(x), x), x, sigmoid(u)),
                    "local chain rule", "A new layer $a' = \\sigma(wa + b)$ feeds the cost: SymPy differentiates $C(\\sigma(wa+b))$ in $a$.",
                    lhs_tex=r"\frac{\partial}{\partial a} C(\sigma(wa+b))", rhs_tex=r"%s w\,\sigma'(wa+b)\, C'(\sigma(wa+b))" % ("" if sign == 1 else "-"))


@lru_cache(maxsize=8)  # called with a few constants only; bounded all the same
def _chain_induction(sign=1):
    C = sympy.Function("C")
    w, a, b = sympy.symbols("w a b", real=True)
    x = sympy.Dummy("x")
    u = w * a + b
    base = [
        Identity(sympy.Derivative(C(sigmoid(u)), b), sp(u) * sympy.Subs(sympy.Derivative(C(x), x), x, sigmoid(u)), "base: dC/db_j",
                 "At depth $L = j$: $\\partial C/\\partial b_j = \\sigma'(z_j)\\,\\partial C/\\partial a_j$.",
                 lhs_tex=r"\frac{\partial}{\partial b} C(\sigma(wa+b))", rhs_tex=r"\sigma'(wa+b)\, C'(\sigma(wa+b))"),
        ExactValue(sympy.Product(Wi[k] * sp(Zi[k]), (k, j + 1, j)), 1, "empty product",
                   lhs_tex=r"\prod_{k=j+1}^{j} w_k\,\sigma'(z_k)"),
    ]
    step = [
        _local_rule(sign),
        Identity(_G(j, L).xreplace({dC_da(L): sign * Wi[L + 1] * sp(Zi[L + 1]) * dC_da(L + 1)}), _G(j, L + 1), "depth L+1",
                 "The claim at $L$ with $\\partial C/\\partial a_L$ replaced by the local rule is the claim at $L+1$ (peeling the last factor of $\\Pi$).",
                 peel=True),
    ]
    return Induction(L, j, base, step, "induction on the depth",
                     statement_tex=r"\frac{\partial C}{\partial b_j} = %s" % sympy.latex(_G(j, L)))


def t_chain(sign=1) -> Theorem:
    ind = _chain_induction(sign)
    lib = _build.chain(L).gradient("b", layer=1)
    w, a, b = sympy.symbols("w a b", real=True)
    F = sympy.Function("F")
    steps = [
        ind,
        Identity(lib.expr, _G(1, L).xreplace({dC_da(L): Ai[L] - y}), "symgrad agrees",
                 "symgrad.chain(L).gradient('b', layer=1), quadratic cost ($\\partial C/\\partial a_L = a_L - y$), is the case $j = 1$.",
                 lhs_tex=r"\texttt{symgrad.chain(L).gradient('b', layer=1)}"),
        Identity(sympy.Derivative(F(w * a + b), w), a * sympy.Derivative(F(w * a + b), b), "w_j version",
                 "$w_j$ and $b_j$ enter the cost only through $z_j = w_j a_{j-1} + b_j$: for any differentiable $C = F(z_j)$, "
                 "SymPy's chain rule gives $\\partial C/\\partial w_j = a_{j-1}\\,\\partial C/\\partial b_j$.",
                 lhs_tex=r"\frac{\partial}{\partial w} F(w a + b)", rhs_tex=r"a\,\frac{\partial}{\partial b} F(w a + b)"),
    ]

    def cross():
        from hypothesis import given, strategies as st

        @settings()
        @given(st.integers(1, 7), st.integers(0, 2 ** 31))
        def prop(depth, seed):
            net = _build.chain(depth)
            p = _numeric.sample(net, seed=seed)
            g = _numeric.backprop(net, p).grads
            w = [float(p["w%d" % i]) for i in range(1, depth + 1)]
            b = [float(p["b%d" % i]) for i in range(1, depth + 1)]
            zs, aL = chain_forward(w, b, float(p["a0"]))
            ds = [float(SIG.grad(np.float64(t))) for t in zs]
            prod = ds[0] * math.prod(w[i] * ds[i] for i in range(1, depth)) * (aL - float(p["y"]))
            assert math.isclose(float(g["b1"]), prod, rel_tol=1e-9, abs_tol=1e-300)
            assert math.isclose(float(g["w1"]), float(p["a0"]) * prod, rel_tol=1e-9, abs_tol=1e-300)

        prop()

    return Theorem("3", "Nielsen's chain at every depth",
                   r"In the chain $z_l = w_l a_{l-1} + b_l$, $a_l = \sigma(z_l)$, for every depth $L \ge j \ge 1$: "
                   r"$\frac{\partial C}{\partial b_j} = \sigma'(z_j)\prod_{k=j+1}^{L} w_k\sigma'(z_k)\,\frac{\partial C}{\partial a_L}$ and "
                   r"$\frac{\partial C}{\partial w_j} = a_{j-1}\frac{\partial C}{\partial b_j}$. For $j = 1$ this is Nielsen's formula.",
                   steps, crosscheck=cross,
                   crosscheck_doc="Hypothesis draws depths 1--7 and seeds; symgrad's NumPy backprop equals the product formula evaluated on the forward pass.",
                   source="articles 001, 002", slug="chain")


# =============================================================================================
# 4. vanishing
# =============================================================================================


def _A(LL):
    return sp(Zi[1]) * sympy.Product(Wi[k] * sp(Zi[k]), (k, 2, LL))


def _R(LL):
    return sympy.Product(sp(Zi[k]) * Wi[k + 1], (k, 1, LL - 1)) * sp(Zi[LL])


@lru_cache(maxsize=1)  # no arguments: one value, computed once
def _regroup():
    """σ'(z_1) Π_{k=2}^{L} w_kσ'(z_k) = Π_{k=1}^{L-1} (σ'(z_k) w_{k+1}) · σ'(z_L), by induction on L = N + 1."""
    N = sympy.Symbol("N", integer=True, nonnegative=True)
    return Induction(N, 0, [Identity(_A(1), _R(1), "base: L = 1")],
                     [Identity(_A(N + 2), _A(N + 1) * Wi[N + 2] * sp(Zi[N + 2]), "peel left side", peel=True),
                      Identity(_R(N + 1) * Wi[N + 2] * sp(Zi[N + 2]), _R(N + 2), "peel right side", peel=True)],
                     "regrouping", statement_tex=r"%s = %s \quad (L = N + 1)" % (sympy.latex(_A(L)), sympy.latex(_R(L))))


def t_vanishing(base=Q(1, 4)) -> Theorem:
    u = sympy.Symbol("u", nonnegative=True)  # u = |w|
    h1, h2 = hyp("h_1"), hyp("h_2")
    P, x = sympy.Symbol("P", nonnegative=True), sympy.Symbol("x", nonnegative=True)
    g1, g2 = hyp("g_1"), hyp("g_2")
    small = Hypothesis(r"1 - |w_j| \ge 0", "|w_j| <= 1", "The hypothesis of the theorem, with $u = |w_j|$.", expr=1 - u)
    factor = Certificate(base - u * sp(z), h1 * sigmoid(z) * sigmoid(-z) + h2 + (base - Q(1, 4)), "one factor",
                         "With $u = |w|$ and $\\sigma'(z) = \\sigma(z)\\sigma(-z) > 0$: $h_1 = 1 - u \\ge 0$ is the hypothesis, "
                         "$h_2 = 1/4 - \\sigma'(z) \\ge 0$ is Theorem 1's upper bound.",
                         where={h1: 1 - u, h2: Q(1, 4) - sp(z)}, by={h1: small, h2: _sigma_upper()},
                         expr_tex=r"%s - |w|\,\sigma'(z)" % sympy.latex(base))
    ih = Hypothesis(r"%s^{n} - P \ge 0" % sympy.latex(base), "claim at n", "$P = x_1\\cdots x_n$.", expr=base ** n - P)
    each = Hypothesis(r"%s - x \ge 0" % sympy.latex(base), "every factor <= b", "$x = x_{n+1}$.", expr=base - x)
    sharp = ExactValue(sp(0), base, "sharpness", "$w = 1$, $z = 0$ attains the factor bound, so no smaller base works.",
                       lhs_tex=r"|w|\,\sigma'(z)\Big|_{w = 1,\ z = 0}")
    prod = Induction(n, 0, [ExactValue(sympy.Pow(base, 0, evaluate=False), 1, "empty product", lhs_tex=r"%s^{0}" % sympy.latex(base))],
                     [Certificate(base ** (n + 1) - P * x, g1 * x + base ** n * g2, "product bound",
                                  "$P$ is a product of $n$ factors in $[0, b]$, $x$ one more: $g_1 = b^n - P \\ge 0$ (claim at $n$), $g_2 = b - x \\ge 0$.",
                                  where={g1: base ** n - P, g2: base - x}, by={g1: ih, g2: each})],
                     "n factors", statement_tex=r"0 \le x_1\cdots x_n \le %s^{n} \text{ when every } 0 \le x_i \le %s" % (sympy.latex(base), sympy.latex(base)),
                     induction_hypothesis=[ih], premises=[each])
    reg = _regroup()
    steps = [
        factor, sharp, reg, prod,
        Implies([_chain_induction(1), reg, factor, prod],
                r"\left|\frac{\partial C}{\partial b_1}\right| = \prod_{k=1}^{L-1}\left|\sigma'(z_k)w_{k+1}\right|\left|\frac{\partial C}{\partial b_L}\right| \le %s^{L-1}\left|\frac{\partial C}{\partial b_L}\right|" % sympy.latex(base),
                "bound the product", rule="Theorem 3 gives $\\partial C/\\partial b_1 = A_L\\,\\partial C/\\partial a_L$ and $\\partial C/\\partial b_L = \\sigma'(z_L)\\,\\partial C/\\partial a_L$; regroup, then bound each of the $L-1$ factors"),
        ExactValue(sympy.Pow(base, 2, evaluate=False), Q(1, 16), "three layers", "$\\partial C/\\partial b_1$ versus $\\partial C/\\partial b_3$: two factors.",
                   lhs_tex=r"%s^{3-1}" % sympy.latex(base)),
    ]

    def cross():
        from hypothesis import given, strategies as st

        @settings()
        @given(st.integers(2, 8), st.integers(0, 2 ** 31))
        def prop(depth, seed):
            net = _build.chain(depth)
            g = _numeric.backprop(net, _numeric.sample(net, init="uniform", seed=seed)).grads
            assert abs(float(g["b1"])) <= 0.25 ** (depth - 1) * abs(float(g["b%d" % depth])) * (1 + 1e-12)

        prop()

    return Theorem("4", "Vanishing gradient",
                   r"If $|w_j| \le 1$ for every $j$, then $\left|\frac{\partial C}{\partial b_1}\right| \le %s^{L-1}\left|\frac{\partial C}{\partial b_L}\right|$, "
                   r"and the base $%s$ cannot be lowered. With three hidden layers, $\partial C/\partial b_1$ is at most $1/16$ of $\partial C/\partial b_3$." % (sympy.latex(base), sympy.latex(base)),
                   steps, hypotheses=[small],
                   crosscheck=cross, crosscheck_doc="Hypothesis draws depths 2--8 with weights $U(-1, 1)$; symgrad's backprop obeys the bound.",
                   source="articles 001, 002", slug="vanishing")


# =============================================================================================
# 5. exploding
# =============================================================================================


def _nielsen_z(w=100, b_over_a=-100) -> Identity:
    """symgrad's own pre-activation z_1 = w_1 a_0 + b_1 at w_1 = 100, b_1 = −100 a_0 (every layer has this form), substituted
    when the step is checked, not when it is built."""
    net = _build.chain(1)
    s = net.symbols
    zz = net.forward()["z1"]
    return Identity(sympy.Subs(zz, (s["w1"], s["b1"]), (w, b_over_a * s["a0"])), 0, "z_j = 0",
                    "symgrad's $z_j = w_j a_{j-1} + b_j$ with $w_j = 100$, $b_j = -100 a_{j-1}$.",
                    lhs_tex=r"z_j\big|_{w_j = %s,\ b_j = %s\,a_{j-1}}" % (w, b_over_a), rhs_tex="0")


def t_exploding(factor=25) -> Theorem:
    c = sympy.Symbol("c", positive=True)
    P, x = sympy.Symbol("P", nonnegative=True), sympy.Symbol("x", positive=True)
    g1, g2 = hyp("g_1"), hyp("g_2")
    ih = Hypothesis(r"P - c^{n} \ge 0", "claim at n", "$P = x_1\\cdots x_n$.", expr=P - c ** n)
    each = Hypothesis(r"x - c \ge 0", "every factor >= c", "$x = x_{n+1}$.", expr=x - c)
    growth = Induction(n, 0, [ExactValue(sympy.Pow(c, 0, evaluate=False), 1, "empty product", lhs_tex=r"%s^{0}" % sympy.latex(c))],
                       [Certificate(P * x - c ** (n + 1), g1 * x + c ** n * g2, "growth",
                                    "$P$ is a product of $n$ factors $\\ge c$, $x \\ge c$ one more: $g_1 = P - c^n \\ge 0$ (claim at $n$), $g_2 = x - c \\ge 0$.",
                                    where={g1: P - c ** n, g2: x - c}, by={g1: ih, g2: each})],
                       "n factors >= c", statement_tex=r"x_1\cdots x_n \ge c^{n} \text{ when every } x_i \ge c > 0",
                       induction_hypothesis=[ih], premises=[each])
    each_factor = ExactValue(100 * sp(0), factor, "each factor", lhs_tex=r"w_j\sigma'(z_j) = 100\,\sigma'(0)")
    steps = [
        _nielsen_z(),
        each_factor,
        growth,
        Implies([_regroup(), each_factor, growth], r"\left|\frac{\partial C}{\partial b_1}\right| \ge c^{L-1}\left|\frac{\partial C}{\partial b_L}\right| \text{ when every } |w_{k+1}\sigma'(z_k)| \ge c;\ \text{here } = %s^{L-1}\left|\frac{\partial C}{\partial b_L}\right|" % factor,
                "bound the product", rule="the regrouping of Theorem 4"),
    ]

    def cross():
        for depth in (2, 5, 8):
            net = _build.chain(depth)
            vals = {"w%d" % i: 100.0 for i in range(1, depth + 1)}
            vals.update({"a0": 0.3, "y": 0.0, "b1": -30.0})
            vals.update({"b%d" % i: -50.0 for i in range(2, depth + 1)})
            g = _numeric.backprop(net, _numeric.sample(net, value=vals)).grads
            assert math.isclose(float(g["b1"]) / float(g["b%d" % depth]), 25.0 ** (depth - 1), rel_tol=1e-12)

    return Theorem("5", "Exploding gradient",
                   r"With $w_j = 100$ and $b_j = -100\,a_{j-1}$, every $z_j = 0$ and every factor $w_j\sigma'(z_j)$ is exactly $%s$. "
                   r"In general, factors $\ge c > 0$ give $|\partial C/\partial b_1| \ge c^{L-1}|\partial C/\partial b_L|$: growth when $c > 1$." % factor,
                   steps, crosscheck=cross, crosscheck_doc="symgrad's backprop on depths 2, 5, 8 with these weights: the ratio is $25^{L-1}$.",
                   source="article 002", slug="exploding")


# =============================================================================================
# 7. saturation
# =============================================================================================


def t_saturation(value=(Q("0.01766"), Q("0.01767")), threshold=4) -> Theorem:
    d = sigmoid(z) * (1 - sigmoid(z))
    second = Identity(sympy.Derivative(d, z), -d * tanh(z / 2), "sigma''")
    decreasing = Certificate(-sympy.diff(d, z).subs(z, zp), sigmoid(zp) * sigmoid(-zp) * tanh(zp / 2), "decreasing for z > 0", strict=True,
                             expr_tex=r"-\sigma''(z)\ (z > 0)")
    even = Identity(sympy.Subs(d, z, -z), d, "even")
    a0, t0 = sympy.Symbol("a", nonnegative=True), sympy.Symbol("t", positive=True)
    steps = [
        second, decreasing, even,
        Certificate(sp(a0) - sp(a0 + t0),
                    exp(a0) * (exp(t0) - 1) * (exp(2 * a0 + t0) - 1) / ((1 + exp(a0)) ** 2 * (1 + exp(a0 + t0)) ** 2),
                    "monotone in |z|", "For $0 \\le a < a + t$: $e^t - 1 > 0$ and $e^{2a+t} - 1 > 0$. With evenness, $\\sigma'$ strictly decreases in $|z|$.",
                    strict=True, expr_tex=r"\sigma'(a) - \sigma'(a + t)\ \ (a \ge 0,\ t > 0)"),
        Solve(d.rewrite(exp) - d.subs(z, 4).rewrite(exp) <= 0, z, sympy.Union(sympy.Interval(-sympy.oo, -threshold), sympy.Interval(threshold, sympy.oo)),
              "saturation", "SymPy solves the inequality in closed form: it holds exactly for $|z| \\ge %s$." % threshold,
              eq_tex=r"\sigma'(z) \le \sigma'(4)"),
        ExactValue(sympy.Subs(d, z, 4), exp(4) / (1 + exp(4)) ** 2, "sigma'(4)"),
        Enclosure(d.subs(z, 4), value[0], value[1], "numeric value", expr_tex=r"\sigma'(4)"),
    ]

    def cross():
        from hypothesis import given, strategies as st

        cap = float(SIG.grad(np.float64(4.0)))

        @settings()
        @given(st.floats(4, 700), st.booleans())
        def prop(x, neg):
            assert float(SIG.grad(np.float64(-x if neg else x))) <= cap

        prop()

    return Theorem("7", "Saturation",
                   r"$\sigma'$ is even and strictly decreasing in $|z|$; for $|z| \ge 4$, $\sigma'(z) \le \sigma'(4) = \frac{e^4}{(1+e^4)^2} \in [%s, %s]$." % value,
                   steps, crosscheck=cross, crosscheck_doc="Hypothesis draws $|z| \\ge 4$; symgrad's NumPy $\\sigma'$ is at most its value at 4.",
                   source="article 004", slug="saturation")


# =============================================================================================
# 8. large initialisation
# =============================================================================================


def t_large_init(value=Q("9536.7431640625")) -> Theorem:
    steps = [
        ExactValue(10 * sp(0), Q(5, 2), "one factor", "A weight of 10 at $z = 0$ gives $w\\sigma'(z) = 2.5$.", lhs_tex=r"10\,\sigma'(0)"),
        ExactValue(sympy.Pow(Q(5, 2), 10, evaluate=False), value, "ten factors", lhs_tex=r"2.5^{10}"),
    ]

    def cross():
        net = _build.chain(11)
        vals = {"w%d" % i: 10.0 for i in range(1, 12)}
        vals.update({"a0": 0.2, "y": 1.0, "b1": -2.0})
        vals.update({"b%d" % i: -5.0 for i in range(2, 12)})
        g = _numeric.backprop(net, _numeric.sample(net, value=vals)).grads
        assert math.isclose(float(g["b1"]) / float(g["b11"]), 2.5 ** 10, rel_tol=1e-12)

    return Theorem("8", "Large initialisation", r"Ten chain factors of $2.5$ multiply to $2.5^{10} = %s$ exactly." % value,
                   steps, crosscheck=cross, crosscheck_doc="symgrad's backprop through ten layers with $w = 10$ at $z = 0$: $\\partial C/\\partial b_1 / \\partial C/\\partial b_{11} = 2.5^{10}$.",
                   source="article 004", slug="large_init")


# =============================================================================================
# 14. ReLU
# =============================================================================================


def t_relu(pos_factor=1) -> Theorem:
    r = activation("relu")
    w = sympy.Symbol("w", real=True)
    # Distinct names for distinct assumptions: SymPy's Subs compares points by name, so Subs(φ', z, z₊) == Subs(φ', z, z₋)
    # when both are called "z" (and its cache then hands back the wrong one).
    zpos, zneg = sympy.Symbol("z_p", positive=True), sympy.Symbol("z_n", negative=True)
    i, N = sympy.Symbol("i", integer=True, positive=True), sympy.Symbol("N", integer=True, positive=True)
    zps, zns = sympy.IndexedBase("p", positive=True), sympy.IndexedBase("q", negative=True)  # z_i > 0, z_i < 0
    ws, av, dv = (sympy.IndexedBase(nm, real=True) for nm in ("w", "a", "delta"))
    steps = [
        ExactValue(w * sympy.Subs(r.derivative, z, zpos), pos_factor * w, "factor, z > 0", lhs_tex=r"w\,\mathrm{ReLU}'(z)\Big|_{z > 0}"),
        ExactValue(w * sympy.Subs(r.derivative, z, zneg), 0, "factor, z < 0", lhs_tex=r"w\,\mathrm{ReLU}'(z)\Big|_{z < 0}"),
        ExactValue(w * sympy.Subs(r.derivative, z, 0), 0, "factor, z = 0", "The convention at the kink.", lhs_tex=r"w\,\mathrm{ReLU}'(0)"),
        Identity(sympy.Product(ws[i] * sympy.Subs(r.derivative, z, zps[i]), (i, 1, N)), sympy.Product(ws[i], (i, 1, N)), "active path",
                 "Along $N$ units with $z_i > 0$ the activation contributes a factor 1: no shrinking, no growth.",
                 lhs_tex=r"\prod_{i=1}^{N} w_i\,\mathrm{ReLU}'(z_i)\ (z_i > 0)"),
        ExactValue(sympy.Sum(av[i] * sympy.Subs(r.derivative, z, zns[i]) * dv[i], (i, 1, N)), 0, "dead unit, dC/dw",
                   "$\\partial C/\\partial w = \\sum_i a_i\\,\\mathrm{ReLU}'(z_i)\\,\\delta_i$ over a batch of $N$ inputs.",
                   lhs_tex=r"\sum_{i=1}^{N} a_i\,\mathrm{ReLU}'(z_i)\,\delta_i\ (z_i < 0)"),
        ExactValue(sympy.Sum(sympy.Subs(r.derivative, z, zns[i]) * dv[i], (i, 1, N)), 0, "dead unit, dC/db",
                   lhs_tex=r"\sum_{i=1}^{N} \mathrm{ReLU}'(z_i)\,\delta_i\ (z_i < 0)"),
    ]

    def cross():
        net = _build.chain(3, activation="relu")
        p = _numeric.sample(net, batch=64, seed=1)
        p["b2"] = np.full(64, -1e3)  # z_2 < 0 on every input: unit 2 is dead
        g = _numeric.backprop(net, p).grads
        assert np.all(g["w2"] == 0) and np.all(g["b2"] == 0) and np.all(g["b1"] == 0)

    return Theorem("14", "ReLU factors and dead units",
                   r"Each ReLU chain factor $w\,\mathrm{ReLU}'(z)$ is $%s w$ (for $z > 0$) or $0$, so the activation neither shrinks nor grows the gradient; "
                   r"a unit with $z < 0$ on every input gets zero gradient (it is dead)." % ("" if pos_factor == 1 else sympy.latex(pos_factor)),
                   steps, crosscheck=cross, crosscheck_doc="symgrad's backprop on a ReLU chain whose second unit has $b_2 = -1000$: its gradients are exactly 0 on all 64 inputs.",
                   source="articles 003, 004", slug="relu")
