"""Theorem 15: He and Glorot initialisation from the second moment of ReLU(z)."""

from __future__ import annotations

import numpy as np
import sympy
from sympy import exp, sqrt

from symgrad import numeric as _numeric
from symgrad.symbolic import build as _build
from symgrad.proof.engine import ExactValue, Given, Identity, Solve, Theorem

__all__ = ["t_init"]


# =============================================================================================
# 15. initialisation
# =============================================================================================


def t_init(relu_moment=None, he=None) -> Theorem:
    x = sympy.Symbol("x", real=True)
    s, q, nin, nout, v, r = (sympy.Symbol(nm, positive=True) for nm in ("s", "q", "n_in", "n_out", "v", "r"))
    pdf = exp(-x ** 2 / (2 * s ** 2)) / (sqrt(2 * sympy.pi) * s)
    relu_moment = s ** 2 / 2 if relu_moment is None else relu_moment
    he = 2 / nin if he is None else he
    steps = [
        Identity(sympy.Integral(x ** 2 * pdf, (x, 0, sympy.oo)), relu_moment, "E[relu(z)^2]",
                 "$\\mathrm{ReLU}(z)^2 = z^2$ for $z > 0$ and 0 otherwise.", lhs_tex=r"\mathbb E[\mathrm{ReLU}(z)^2] = \int_0^\infty x^2\,\frac{e^{-x^2/2s^2}}{\sqrt{2\pi}\,s}\,dx"),
        Identity(sympy.Integral(x ** 2 * pdf, (x, -sympy.oo, sympy.oo)), s ** 2, "E[z^2]", lhs_tex=r"\mathbb E[z^2]"),
        Given(r"\operatorname{Var}(z^{l}_i) = n_{\mathrm{in}}\operatorname{Var}(W)\,\mathbb E[(a^{l-1})^2]", "independent zero-mean weights",
              "Weights independent of the inputs and of each other, with mean 0."),
        Solve(nin * v * q / 2 - q, v, sympy.FiniteSet(he), "He", "$\\mathbb E[(a^l)^2] = n_{\\mathrm{in}} v\\,q/2$ equals $q = \\mathbb E[(a^{l-1})^2]$ iff $v = 2/n_{\\mathrm{in}}$.",
              eq_tex=r"n_{\mathrm{in}} v\,q/2 = q"),
        Solve(v * (nin + nout) / 2 - 1, v, sympy.FiniteSet(2 / (nin + nout)), "Glorot",
              "Forward needs $n_{\\mathrm{in}}v = 1$, backward $n_{\\mathrm{out}}v = 1$; the compromise averages them.",
              eq_tex=r"\tfrac12(n_{\mathrm{in}} + n_{\mathrm{out}})\,v = 1"),
        Identity(sympy.Integral(x ** 2 / (2 * r), (x, -r, r)), r ** 2 / 3, "uniform variance", lhs_tex=r"\operatorname{Var} U(-r, r)"),
        ExactValue(sympy.Pow(sqrt(6 / (nin + nout)), 2, evaluate=False) / 3, 2 / (nin + nout), "Glorot uniform", lhs_tex=r"\frac13\left(\sqrt{6/(n_{\mathrm{in}} + n_{\mathrm{out}})}\right)^2"),
    ]

    def cross():
        rng = np.random.default_rng(0)
        zs = rng.normal(0.0, 1.7, 400_000)
        assert abs(np.mean(np.maximum(zs, 0) ** 2) / (1.7 ** 2 / 2) - 1) < 0.02
        p = _numeric.sample(_build.network([400, 300]), init="he", seed=0)
        assert abs(np.var(p["W1"]) / (2 / 400) - 1) < 0.03

    return Theorem("15", "He and Glorot initialisation",
                   r"For $z \sim N(0, s^2)$, $\mathbb E[\mathrm{ReLU}(z)^2] = %s$, so $\operatorname{Var}(W) = %s$ preserves the second moment (He); "
                   r"the Glorot compromise is $\operatorname{Var}(W) = 2/(n_{\mathrm{in}} + n_{\mathrm{out}})$, i.e. $U(-r, r)$ with $r = \sqrt{6/(n_{\mathrm{in}}+n_{\mathrm{out}})}$." % (sympy.latex(relu_moment), sympy.latex(he)),
                   steps, crosscheck=cross, crosscheck_doc="Monte Carlo (400,000 draws) of $\\mathbb E[\\mathrm{ReLU}(z)^2]$, and the variance of symgrad.sample(init='he').",
                   source="article 003 (the fix), He et al., Glorot and Bengio", slug="init")
