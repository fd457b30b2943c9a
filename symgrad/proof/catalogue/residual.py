r"""Theorem 18: a residual chain's closed form and the bounds on its path product.

For ``a_k = a_{k−1} + α σ(z_k)``, ``z_k = w_k a_{k−1} + b_k``:
``∂C/∂b_j = α σ'(z_j) · P_j · ∂C/∂a_L`` with ``P_j = Π_{k=j+1}^{L} (1 + α w_k σ'(z_k))``, and if
every ``|α w_k σ'(z_k)| ≤ r < 1`` then ``(1 − r)^{L−j} ≤ |P_j| ≤ (1 + r)^{L−j}``.

Issue #14 states the closed form as ``σ'(z_j) · P_j · ∂C/∂a_L``; that lacks the factor α_j of
``∂a_j/∂b_j = α σ'(z_j)`` (the false variant ``lead_alpha=False`` fails at its base case).
"""

from __future__ import annotations

import sympy

from symgrad.spec.activations import sigmoid
from symgrad.symbolic import build as _build
from symgrad.proof.engine import Certificate, ExactValue, Hypothesis, Identity, Implies, Induction, Theorem
from symgrad.proof.catalogue._common import Ai, L, Wi, Zi, dC_da, hyp, j, k, n, sp, y

__all__ = ["t_residual"]

#: α of the residual layers: any real number (the theorem's symbol; symgrad reads its value by name).
ALPHA = sympy.Symbol("alpha", real=True)


def _P(lo, hi):
    """The path product Π_{k=lo}^{hi} (1 + α w_k σ'(z_k))."""
    return sympy.Product(1 + ALPHA * Wi[k] * sp(Zi[k]), (k, lo, hi))


def _R(jj, LL, lead_alpha=True):
    """α σ'(z_j) · P_{j} · ∂C/∂a_L (without the leading α when ``lead_alpha`` is False)."""
    return (ALPHA if lead_alpha else 1) * sp(Zi[jj]) * _P(jj + 1, LL) * dC_da(LL)


def _closed_form(lead_alpha=True):
    """∂C/∂b_j = α σ'(z_j) Π_{k=j+1}^{L} (1 + α w_k σ'(z_k)) ∂C/∂a_L, by induction on L ≥ j."""
    C = sympy.Function("C")
    w, a, b = sympy.symbols("w a b", real=True)
    x = sympy.Dummy("x")
    u = w * a + b
    out = a + ALPHA * sigmoid(u)  # one residual layer: a' = a + α σ(wa + b)
    base = [
        Identity(sympy.Derivative(C(out), b), (ALPHA if lead_alpha else 1) * sp(u) * sympy.Subs(sympy.Derivative(C(x), x), x, out),
                 "base: dC/db_j",
                 "At depth $L = j$: $\\partial C/\\partial b_j = \\partial a_j/\\partial b_j\\,\\partial C/\\partial a_j$ with "
                 "$\\partial a_j/\\partial b_j = \\alpha\\,\\sigma'(z_j)$ (the skip term $a_{j-1}$ does not depend on $b_j$).",
                 lhs_tex=r"\frac{\partial}{\partial b} C(a + \alpha\,\sigma(wa+b))",
                 rhs_tex=r"%s\sigma'(wa+b)\, C'(a + \alpha\,\sigma(wa+b))" % (r"\alpha\," if lead_alpha else "")),
        ExactValue(_P(j + 1, j), 1, "empty product", lhs_tex=r"\prod_{k=j+1}^{j} \bigl(1 + \alpha\, w_k\,\sigma'(z_k)\bigr)"),
    ]
    step = [
        Identity(sympy.Derivative(C(out), a), (1 + ALPHA * w * sp(u)) * sympy.Subs(sympy.Derivative(C(x), x), x, out),
                 "local chain rule",
                 "A new residual layer $a' = a + \\alpha\\,\\sigma(wa + b)$ feeds the cost: SymPy differentiates "
                 "$C(a + \\alpha\\,\\sigma(wa+b))$ in $a$; the skip connection contributes the 1.",
                 lhs_tex=r"\frac{\partial}{\partial a} C(a + \alpha\,\sigma(wa+b))",
                 rhs_tex=r"\bigl(1 + \alpha\, w\,\sigma'(wa+b)\bigr)\, C'(a + \alpha\,\sigma(wa+b))"),
        Identity(_R(j, L, lead_alpha).xreplace({dC_da(L): (1 + ALPHA * Wi[L + 1] * sp(Zi[L + 1])) * dC_da(L + 1)}),
                 _R(j, L + 1, lead_alpha), "depth L+1",
                 "The claim at $L$ with $\\partial C/\\partial a_L$ replaced by the local rule is the claim at $L+1$ "
                 "(peeling the last factor of $\\Pi$).", peel=True),
    ]
    return Induction(L, j, base, step, "induction on the depth",
                     statement_tex=r"\frac{\partial C}{\partial b_j} = %s" % sympy.latex(_R(j, L, lead_alpha)))


def _bounds(exponent_offset=0, r_below_one=True):
    """(lower, upper, positive): inductions on n for x_1⋯x_n ≥ m^n and ≤ M^n when every
    m ≤ x_i ≤ M, with m = 1 − r > 0 and M = 1 + r, and the positivity of each factor."""
    # m = 1 − r: positive exactly when r < 1 (the false variant r ≥ 1 makes it nonpositive).
    m = sympy.Symbol("m", positive=True) if r_below_one else sympy.Symbol("m", nonpositive=True)
    M = sympy.Symbol("M", positive=True)
    P = sympy.Symbol("P", nonnegative=True)
    x = sympy.Symbol("x", positive=True)
    e = exponent_offset
    g1, g2 = hyp("g_1"), hyp("g_2")
    lo_each = Hypothesis(r"x - m \ge 0", "every factor >= 1 - r",
                         "$x = x_{n+1} = 1 + \\alpha w_k \\sigma'(z_k)$ and $|\\alpha w_k\\sigma'(z_k)| \\le r$, so $x \\ge 1 - r = m$.", expr=x - m)
    hi_each = Hypothesis(r"M - x \ge 0", "every factor <= 1 + r",
                         "$|\\alpha w_k\\sigma'(z_k)| \\le r$, so $x \\le 1 + r = M$.", expr=M - x)
    positive = Certificate(x, g2 + m, "factor positive", "$x \\ge m$ and $m = 1 - r > 0$ because $r < 1$.", strict=True,
                           where={g2: x - m}, by={g2: lo_each})
    lo_ih = Hypothesis(r"P - m^{n%s} \ge 0" % ("" if e == 0 else "%+d" % e), "lower claim at n",
                       "$P = x_1\\cdots x_n$.", expr=P - m ** (n + e))
    lower = Induction(n, 0,
                      [Certificate(1 - m ** e, sympy.S.Zero, "base: lower",
                                   "The empty product is $1$, and the claim at $n = 0$ is $1 \\ge m^{%d}$." % e,
                                   expr_tex=r"1 - m^{%d}" % e)],
                      [positive,
                       Certificate(P * x - m ** (n + 1 + e), g1 * x + m ** (n + e) * g2, "lower step",
                                   "$g_1 = P - m^{n}$ (claim at $n$), $g_2 = x - m$ (premise), $x > 0$ (factor positive).",
                                   where={g1: P - m ** (n + e), g2: x - m}, by={g1: lo_ih, g2: lo_each})],
                      "lower bound", statement_tex=r"x_1\cdots x_n \ge m^{n%s} \text{ when every } x_i \ge m = 1 - r > 0" % ("" if e == 0 else "%+d" % e),
                      induction_hypothesis=[lo_ih], premises=[lo_each])
    hi_ih = Hypothesis(r"M^{n} - P \ge 0", "upper claim at n", "$P = x_1\\cdots x_n$.", expr=M ** n - P)
    upper = Induction(n, 0,
                      [Certificate(M ** 0 - 1, sympy.S.Zero, "base: upper", "The empty product is $1 = M^{0}$.", expr_tex=r"M^{0} - 1")],
                      [positive,
                       Certificate(M ** (n + 1) - P * x, g1 * x + M ** n * g2, "upper step",
                                   "$g_1 = M^{n} - P$ (claim at $n$), $g_2 = M - x$ (premise), $x > 0$ (factor positive).",
                                   where={g1: M ** n - P, g2: M - x}, by={g1: hi_ih, g2: hi_each})],
                      "upper bound", statement_tex=r"x_1\cdots x_n \le M^{n} \text{ when every } 0 < x_i \le M = 1 + r",
                      induction_hypothesis=[hi_ih], premises=[hi_each, lo_each])
    return lower, upper


def t_residual(*, lead_alpha=True, exponent_offset=0, r_below_one=True) -> Theorem:
    """Theorem 18.  False variants: ``lead_alpha=False`` (issue #14's form, without α_j) fails at
    "induction on the depth"; ``exponent_offset=-1`` (the lower bound (1 − r)^{L−j−1}) at "lower
    bound"; ``r_below_one=False`` (r ≥ 1, so 1 − r ≤ 0) at "lower bound" (its factor is no longer
    positive)."""
    closed = _closed_form(lead_alpha)
    w, a, b = sympy.symbols("w a b", real=True)
    F = sympy.Function("F")
    lib = _build.chain(L, residual=ALPHA).gradient("b", layer=1)
    lower, upper = _bounds(exponent_offset, r_below_one)
    r = sympy.Symbol("r", nonnegative=True)
    steps = [
        closed,
        Identity(lib.expr, _R(1, L).xreplace({dC_da(L): Ai[L] - y}), "symgrad agrees",
                 "symgrad.chain(L, residual=alpha).gradient('b', layer=1), quadratic cost ($\\partial C/\\partial a_L = a_L - y$), "
                 "is the case $j = 1$.",
                 lhs_tex=r"\texttt{symgrad.chain(L, residual=alpha).gradient('b', layer=1)}"),
        Identity(sympy.Derivative(F(w * a + b), w), a * sympy.Derivative(F(w * a + b), b), "w_j version",
                 "$w_j$ and $b_j$ enter the cost only through $z_j = w_j a_{j-1} + b_j$, so "
                 "$\\partial C/\\partial w_j = a_{j-1}\\,\\partial C/\\partial b_j$."),
        lower,
        upper,
        ExactValue(sympy.Product(1 - r, (k, j + 1, L)), (1 - r) ** (L - j), "sharp",
                   "Every $\\alpha w_k \\sigma'(z_k) = -r$ attains the lower bound.",
                   lhs_tex=r"\prod_{k=j+1}^{L} (1 - r)"),
        ExactValue(sympy.Product(r, (k, j + 1, L)), r ** (L - j), "plain chain",
                   "A plain chain whose every factor $w_k\\sigma'(z_k)$ equals $r$ has the path product $r^{L-j}$.",
                   lhs_tex=r"\prod_{k=j+1}^{L} r"),
        Implies([closed, lower, upper],
                r"(1 - r)^{L-j} \le |P_j| = P_j \le (1 + r)^{L-j} \text{ for } P_j = \prod_{k=j+1}^{L}\bigl(1 + \alpha w_k\sigma'(z_k)\bigr)"
                r" \text{ when every } |\alpha w_k \sigma'(z_k)| \le r < 1",
                "bound the path product",
                rule="apply the two bounds to the L - j factors x_k = 1 + alpha w_k sigma'(z_k), each in [1 - r, 1 + r] and positive"),
    ]

    def cross():
        from symgrad.symbolic.verify import verify_gradient

        for net, names in ((_build.chain(4, "tanh", residual=ALPHA), ("b1", "w2", "a0")),
                           (_build.chain(3, "relu", residual=[ALPHA, None, sympy.Rational(1, 2)]), ("b1", "w3"))):
            for name in names:
                assert verify_gradient(net, name).ok, (net, name)

    return Theorem("18", "Residual chain: closed form and path-product bounds",
                   r"For a residual chain $a_k = a_{k-1} + \alpha\,\sigma(z_k)$, $z_k = w_k a_{k-1} + b_k$: "
                   r"$\frac{\partial C}{\partial b_j} = \alpha\,\sigma'(z_j)\, P_j\, \frac{\partial C}{\partial a_L}$ with the path product "
                   r"$P_j = \prod_{k=j+1}^{L}\bigl(1 + \alpha w_k\sigma'(z_k)\bigr)$, and "
                   r"$\frac{\partial C}{\partial w_j} = a_{j-1}\frac{\partial C}{\partial b_j}$. "
                   r"(Issue \#14 writes $\sigma'(z_j)\,P_j\,\partial C/\partial a_L$, which lacks the factor $\alpha$ of "
                   r"$\partial a_j/\partial b_j = \alpha\,\sigma'(z_j)$.) If every $|\alpha w_k\sigma'(z_k)| \le r < 1$, then "
                   r"$(1 - r)^{L-j} \le |P_j| \le (1 + r)^{L-j}$: the path through a residual chain cannot shrink faster than "
                   r"$(1 - r)^{L-j}$, where a plain chain's $\prod w_k\sigma'(z_k)$ can be $r^{L-j}$.",
                   steps, crosscheck=cross,
                   crosscheck_doc="symgrad's exact verification against sympy.diff of the composed loss on a depth-4 tanh residual chain "
                                  "(symbolic $\\alpha$) and a depth-3 ReLU chain mixing residual and plain layers.",
                   source="issue #14 (residual networks); He et al., Deep Residual Learning (2016)", slug="residual_chain")
