"""Theorem 11: cross-entropy with a sigmoid output cancels the output σ', not the hidden ones."""

from __future__ import annotations

import math
from functools import lru_cache

import sympy
from sympy import log

from symgrad import numeric as _numeric
from symgrad.spec.activations import sigmoid, z
from symgrad.symbolic import build as _build
from symgrad.proof.engine import Identity, Induction, Theorem
from symgrad.proof.catalogue._common import Ai, L, M, Wi, Zi, chain_forward, dC_da, k, sp, y
from symgrad.proof.catalogue.chains import _G

__all__ = ["t_cross_entropy"]


# =============================================================================================
# 11. cross-entropy
# =============================================================================================


def _ce_lib(m):
    return sympy.Product(sp(Zi[k]) * Wi[k + 1], (k, 1, m)) * (Ai[m + 1] - y)


def _ce_hidden(m):
    return sp(Zi[1]) * sympy.Product(Wi[k] * sp(Zi[k]), (k, 2, m)) * Wi[m + 1]


@lru_cache(maxsize=1)  # no arguments: one value, computed once
def _ce_regroup():
    """Π_{k=1}^{M} σ'(z_k) w_{k+1} = σ'(z_1) Π_{k=2}^{M} w_kσ'(z_k) · w_{M+1}, by induction on M = N + 1."""
    N = sympy.Symbol("N", integer=True, nonnegative=True)
    lhs = lambda m: sympy.Product(sp(Zi[k]) * Wi[k + 1], (k, 1, m))  # noqa: E731
    return Induction(N, 0, [Identity(lhs(1), _ce_hidden(1), "base: M = 1")],
                     [Identity(lhs(N + 2), lhs(N + 1) * sp(Zi[N + 2]) * Wi[N + 3], "peel left side", peel=True),
                      Identity(_ce_hidden(N + 1) * sp(Zi[N + 2]) * Wi[N + 3], _ce_hidden(N + 2), "peel right side", peel=True)],
                     "symgrad's grouping", "symgrad's product and the one above are the same product, grouped differently.",
                     statement_tex=r"%s = %s \quad (M = N + 1)" % (sympy.latex(lhs(M)), sympy.latex(_ce_hidden(M))))


def t_cross_entropy(sign=1) -> Theorem:
    s = sigmoid(z)
    ce = -(y * log(s) + (1 - y) * log(1 - s))
    lib = _build.chain(L, loss="cross_entropy").gradient("b", layer=1)
    hidden = sp(Zi[1]) * sympy.Product(Wi[k] * sp(Zi[k]), (k, 2, M)) * Wi[M + 1] * (Ai[M + 1] - y)
    steps = [
        Identity(sympy.Derivative(ce, z), sign * (s - y), "output delta", lhs_tex=r"\frac{\partial}{\partial z}\Big(-y\ln\sigma(z) - (1-y)\ln(1-\sigma(z))\Big)"),
        Identity(_G(1, M + 1).xreplace({dC_da(M + 1): (Ai[M + 1] - y) / sp(Zi[M + 1])}), hidden, "hidden factors remain",
                 "Theorem 3 with $L = M + 1 \\ge 2$ and $\\sigma'(z_L)\\,\\partial C/\\partial a_L = a_L - y$ (divide by $\\sigma'(z_L) > 0$).", peel=True),
        Identity(lib.expr, _ce_lib(M).xreplace({M: L - 1}), "symgrad agrees",
                 "symgrad.chain(L, loss='cross_entropy') gives the product grouped as $\\prod_{k=1}^{L-1}\\sigma'(z_k)\\,w_{k+1}\\cdot(a_L - y)$.",
                 lhs_tex=r"\texttt{symgrad.chain(L, loss='cross\_entropy').gradient('b', layer=1)}"),
        _ce_regroup(),
    ]

    def cross():
        for depth in (1, 3, 6):
            net = _build.chain(depth, loss="cross_entropy")
            p = _numeric.sample(net, seed=depth)
            g = _numeric.backprop(net, p).grads
            w = [float(p["w%d" % i]) for i in range(1, depth + 1)]
            b = [float(p["b%d" % i]) for i in range(1, depth + 1)]
            _, aL = chain_forward(w, b, float(p["a0"]))
            assert math.isclose(float(g["b%d" % depth]), aL - float(p["y"]), rel_tol=1e-12, abs_tol=1e-15)

    return Theorem("11", "Cross-entropy with a sigmoid output",
                   r"For $C = -y\ln a_L - (1-y)\ln(1-a_L)$ and $a_L = \sigma(z_L)$: $\frac{\partial C}{\partial z_L} = a_L - y$. "
                   r"The output $\sigma'(z_L)$ cancels, but $\frac{\partial C}{\partial b_1} = \sigma'(z_1)\prod_{k=2}^{L-1}w_k\sigma'(z_k)\cdot w_L(a_L - y)$ keeps the hidden factors.",
                   steps, crosscheck=cross, crosscheck_doc="symgrad's backprop with cross-entropy: $\\partial C/\\partial b_L = a_L - y$ on depths 1, 3, 6.",
                   source="article 002 (Nielsen)", slug="cross_entropy")
