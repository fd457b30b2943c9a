"""Theorem 6: where |w σ'(wa + b)| ≥ 1, the only inputs at which a sigmoid factor does not
shrink the gradient, and how wide that interval can be."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import sympy
from sympy import Rational as Q, S, log, sqrt

from symgrad.spec.activations import sigmoid, z
from symgrad.proof.engine import Certificate, CertifiedRoot, Enclosure, Hypothesis, Identity, Implies, Solve, Theorem
from symgrad.proof.catalogue._common import SIG, hyp, settings, sp
from symgrad.proof.catalogue.activations import _sigma_upper

__all__ = ["t_interval"]


# =============================================================================================
# 6. the interval where |w σ'(wa + b)| ≥ 1
# =============================================================================================


def _width_w():
    w = sympy.Symbol("w", positive=True)
    return w, 2 / w * log(w * (1 + sqrt(1 - 4 / w)) / 2 - 1)


@lru_cache(maxsize=1)  # no arguments: one value, computed once
def _r_root():
    r = sympy.Symbol("r", positive=True)
    return CertifiedRoot.near(1 - r * log((1 + r) / (1 - r)), r, Q(1, 2), Q(19, 20), 12, "critical point r*")


@lru_cache(maxsize=1)  # no arguments: one value, computed once
def _w_root():
    w, W = _width_w()
    return CertifiedRoot.near(sympy.diff(W, w), w, 6, 8, 6, "critical point |w|*", "The derivative of the width in $|w|$ changes sign in $[6, 8]$.")


def t_interval(coef=2, wmax=(Q("6.894"), Q("6.895")), width=(Q("0.4477"), Q("0.4478"))) -> Theorem:
    W = sympy.Symbol("W", positive=True)  # |w|
    s = sympy.Symbol("s", positive=True)
    r = sympy.Symbol("r", positive=True)
    h, m = hyp("h"), hyp("m", positive=True)
    Wr = 4 / (1 - r ** 2)
    X = (1 + r) / (1 - r)
    lo_s, hi_s = (1 - r) / 2, (1 + r) / 2
    f = (1 - r ** 2) / 2 * log(X)
    g = r * log(X)
    ell, mm, m1 = hyp("ell"), hyp("m", positive=True), hyp("m_1", positive=True)
    rr = _r_root()
    wr = _w_root()
    w, Ww = _width_w()
    small = Hypothesis(r"4 - |w| > 0", "case |w| < 4", "The first case of the statement.", expr=4 - W, strict=True)
    below1 = Hypothesis(r"1 - r > 0", "case |w| >= 4 (r < 1)",
                        "The second case of the statement in the variable $r = \\sqrt{1 - 4/|w|}$ (change of variables): $|w| \\ge 4$ is $0 \\le r < 1$.",
                        expr=1 - r, strict=True)
    x_ge_1 = Certificate(X - 1, 2 * r / m1, "X >= 1", "$m_1 = 1 - r > 0$.", strict=True, where={m1: 1 - r}, by={m1: below1})
    ln_x = Certificate(log(X), log(1 + 2 * r / m1), "ln X >= 0", "$\\ln$ of a number $\\ge 1$; $m_1 = 1 - r > 0$.",
                       where={m1: 1 - r}, by={m1: below1})
    one_minus_r2 = Certificate(1 - r ** 2, m1 * (1 + r), "1 - r^2 > 0", strict=True, where={m1: 1 - r}, by={m1: below1})
    deriv = Identity(sympy.Derivative(f, r), 1 - g, "derivative in r", "The width is $f(r) = \\frac{1-r^2}{2}\\ln X$, and $|w|$ increases with $r$.")
    g_incr = Certificate(sympy.diff(g, r), ell + 2 * r / mm, "g increases", "$g(r) = r\\ln X$; $\\ell = \\ln X \\ge 0$, $m = 1 - r^2 > 0$.",
                         strict=True, where={ell: log(X), mm: 1 - r ** 2}, by={ell: ln_x, mm: one_minus_r2})
    steps = [
        Certificate(1 - W * sp(z), h * W + m / 4, "no solution for |w| < 4",
                    "$W = |w| > 0$, $u = wa + b$: $h = 1/4 - \\sigma'(u) \\ge 0$ (Theorem 1) and $m = 4 - W > 0$ (the case): so $|w|\\sigma'(u) < 1$.",
                    strict=True, where={h: Q(1, 4) - sp(z), m: 4 - W}, by={h: _sigma_upper(), m: small}, expr_tex=r"1 - |w|\,\sigma'(u)"),
        Identity(sqrt(1 - 4 / Wr), r, "change of variables",
                 "For $|w| \\ge 4$ put $r = \\sqrt{1 - 4/|w|} \\in [0, 1)$, i.e. $|w| = 4/(1-r^2)$; $r = 0$ is the single point $u = 0$.",
                 lhs_tex=r"\sqrt{1 - 4/|w|}\,\Big|_{|w| = 4/(1 - r^2)}"),
        Identity(s * (1 - s) - 1 / Wr, (hi_s - s) * (s - lo_s), "factorisation",
                 "With $s = \\sigma(u)$, $\\sigma'(u) \\ge 1/|w|$ iff $s$ lies between the roots."),
        Solve(s * (1 - s) - (1 - r ** 2) / 4, s, sympy.FiniteSet(lo_s, hi_s), "roots", domain=S.Complexes),
        Identity(sigmoid(log(s / (1 - s))), s, "inverse of sigma",
                 "$\\sigma$ is increasing (Theorem 1), so $s \\in [s_-, s_+]$ iff $u \\in [\\ln\\frac{s_-}{1-s_-}, \\ln\\frac{s_+}{1-s_+}]$, an interval in $a = (u-b)/w$."),
        Identity((hi_s / (1 - hi_s)) / (lo_s / (1 - lo_s)), X ** 2, "ratio of the ends",
                 "So the $u$-interval has length $\\ln X^2 = 2\\ln X$ with $X = (1+r)/(1-r)$."),
        Identity(Wr * (1 + r) / 2 - 1, X, "the argument of ln", lhs_tex=r"\frac{|w|(1+\sqrt{1-4/|w|})}{2} - 1"),
        Identity((coef / W * log(W * (1 + sqrt(1 - 4 / W)) / 2 - 1)).xreplace({W: Wr}), 2 * log(X) / Wr, "width formula",
                 "The $a$-interval is the $u$-interval divided by $|w|$; the statement's formula, at $|w| = 4/(1-r^2)$, is this width.",
                 lhs_tex=r"\frac{%s}{|w|}\ln\left(\frac{|w|(1+\sqrt{1-4/|w|})}{2} - 1\right)" % coef, rhs_tex=r"\frac{2\ln X}{|w|}"),
        deriv, x_ge_1, ln_x, one_minus_r2, g_incr, rr,
        Implies([deriv, g_incr, rr], r"f \text{ increases on } [0, r^*] \text{ and decreases on } [r^*, 1)", "unique maximum",
                rule="$f' = 1 - g$ with $g$ increasing from $g(0) = 0$, and $g(r^*) = 1$"),
        Enclosure(Wr, wmax[0], wmax[1], "maximiser", env={r: (rr.lo, rr.hi)}, expr_tex=r"|w|^* = \frac{4}{1 - r^{*2}}"),
        Enclosure(f, width[0], width[1], "maximum width", env={r: (rr.lo, rr.hi)}, expr_tex="f(r^*)"),
        wr,
        Enclosure(Ww, width[0], width[1], "maximum width, directly", env={w: (wr.lo, wr.hi)}, expr_tex=r"\mathrm{width}(|w|^*)"),
    ]

    def cross():
        from hypothesis import given, strategies as st

        @settings()
        @given(st.floats(4.05, 60), st.floats(-3, 3))
        def prop(wv, bv):
            xs = np.linspace(-bv / wv - 3, -bv / wv + 3, 600001)
            ok = wv * SIG.grad(wv * xs + bv) >= 1
            dx = xs[1] - xs[0]
            measured = ok.sum() * dx
            exact = 2 / wv * math.log(wv * (1 + math.sqrt(1 - 4 / wv)) / 2 - 1)
            assert abs(measured - exact) <= 3 * dx

        prop()

    return Theorem("6", "Where |w sigma'(wa+b)| >= 1",
                   r"$|w\,\sigma'(wa+b)| \ge 1$ has no solution $a$ when $|w| < 4$. For $|w| \ge 4$ its solutions form an interval of width "
                   r"$\frac{%s}{|w|}\ln\left(\frac{|w|(1+\sqrt{1-4/|w|})}{2} - 1\right)$, largest at $|w|^* \in [%s, %s]$, where it is in $[%s, %s]$."
                   % (coef, wmax[0], wmax[1], width[0], width[1]),
                   steps, hypotheses=[small, below1], crosscheck=cross,
                   crosscheck_doc="Hypothesis draws $|w| \\in [4.05, 60]$ and $b$; the measured length of $\\{a : w\\sigma'(wa+b) \\ge 1\\}$ on a fine grid matches the formula.",
                   source="article 002; Nielsen, chapter 5 problems", slug="interval")
