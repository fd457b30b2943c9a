"""Theorems 1 and 2a–2e: each built-in activation's derivative in closed form and its
supremum sup|φ'|, the number every chain bound multiplies."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import sympy
from sympy import Rational as Q, S, exp, log, sqrt, tanh

from symgrad.spec.activations import activation, elu, leaky_relu, relu, sigmoid, z
from symgrad.proof.engine import (
    Certificate, CertifiedRoot, Enclosure, ExactValue, Identity, Implies, Limit, Solve, Theorem,
)
from symgrad.proof.catalogue._common import SIG, alpha, np_sig, settings, sp, zn, zp

__all__ = ["t_sigmoid", "t_tanh", "t_relu_family", "t_softplus", "t_silu", "t_gelu"]


# =============================================================================================
# 1. sigmoid
# =============================================================================================


@lru_cache(maxsize=8)  # called with a few constants only; bounded all the same
def _sigma_upper(sup=Q(1, 4)) -> Certificate:
    """σ'(z) ≤ sup as a certificate; the true one (sup = 1/4) is shared with the theorems that
    use Theorem 1, whose certificate hypotheses ``1/4 − σ'(z) ≥ 0`` are linked to it."""
    s = sigmoid(z)
    return Certificate(sup - s * (1 - s), (s - S.Half) ** 2, "upper bound", "A square.")


def t_sigmoid(sup=Q(1, 4)) -> Theorem:
    s = sigmoid(z)
    steps = [
        Identity(sympy.Derivative(1 / (1 + exp(-z)), z), s * (1 - s), "closed form", "Differentiate $1/(1+e^{-z})$.",
                 lhs_tex=r"\frac{d}{dz}\frac{1}{1+e^{-z}}"),
        Identity(SIG.derivative, s * (1 - s), "symgrad's $\\sigma'$", "The derivative symgrad uses is this closed form.",
                 lhs_tex=r"\texttt{symgrad}\ \sigma'(z)"),
        Certificate(s * (1 - s), sigmoid(z) * sigmoid(-z), "positivity", "Since $1-\\sigma(z) = \\sigma(-z)$, a product of two values of $\\sigma$.",
                    strict=True),
        _sigma_upper(sup),
        Solve(sigmoid(z).rewrite(exp) - S.Half, z, sympy.FiniteSet(0), "equality case", "The square vanishes iff $\\sigma(z) = 1/2$."),
        ExactValue(sp(0), sup, "attained", "At $z = 0$.", lhs_tex=r"\sigma'(0) = \sigma(0)\,(1 - \sigma(0))"),
    ]

    def cross():
        from hypothesis import given, strategies as st

        @settings()
        @given(st.floats(-40, 40))
        def prop(x):
            g = float(SIG.grad(np.float64(x)))
            assert 0 < g <= 0.25
            h = 1e-5
            fd = (float(np_sig(x + h)) - float(np_sig(x - h))) / (2 * h)
            assert abs(g - fd) < 1e-8

        prop()

    return Theorem("1", "Sigmoid derivative and its bound",
                   r"For all real $z$: $\sigma'(z) = \sigma(z)(1-\sigma(z))$ and $0 < \sigma'(z) \le %s$, with equality iff $z = 0$." % sympy.latex(sup),
                   steps, crosscheck=cross, crosscheck_doc="Hypothesis draws $z \\in [-40, 40]$; symgrad's NumPy $\\sigma'$ lies in $(0, 1/4]$ and matches a central difference.",
                   source="articles 000, 002, 003", slug="sigmoid")


# =============================================================================================
# 2. other activations
# =============================================================================================


def t_tanh(sup=S.One) -> Theorem:
    t = tanh(z)
    steps = [
        Identity(sympy.Derivative(t, z), 1 - t ** 2, "closed form", lhs_tex=r"\frac{d}{dz}\tanh z"),
        Certificate(1 - t ** 2, 1 / sympy.cosh(z) ** 2, "positivity", "$1 - \\tanh^2 = 1/\\cosh^2$.", strict=True),
        Certificate(sup - (1 - t ** 2), t ** 2, "upper bound", "A square."),
        Solve(t, z, sympy.FiniteSet(0), "equality case"),
        ExactValue(sympy.Subs(1 - t ** 2, z, 0), sup, "attained", lhs_tex=r"1 - \tanh^2(0)"),
    ]

    def cross():
        x = np.linspace(-20, 20, 4001)
        g = activation("tanh").grad(x)
        assert np.all(g > 0) and np.all(g <= 1) and g[2000] == 1.0

    return Theorem("2a", "tanh derivative", r"$\tanh'(z) = 1 - \tanh^2(z) \in (0, %s]$, with equality iff $z = 0$." % sympy.latex(sup),
                   steps, crosscheck=cross, crosscheck_doc="symgrad's NumPy $\\tanh'$ on a grid of $[-20, 20]$ lies in $(0, 1]$ and is 1 at 0.",
                   source="article 003", slug="tanh")


def t_relu_family(leaky_neg=None) -> Theorem:
    """``leaky_neg``: the claimed LeakyReLU slope for z ≤ 0 (default α)."""
    leaky_neg = alpha if leaky_neg is None else leaky_neg
    r, lr, el = activation("relu"), activation("leaky_relu"), activation("elu")
    a100 = Q(1, 100)
    steps = [
        Identity(sympy.Derivative(relu(zp), zp), 1, "ReLU, z > 0", lhs_tex=r"\frac{d}{dz}\max(0, z)\Big|_{z > 0}"),
        Identity(sympy.Derivative(relu(zn), zn), 0, "ReLU, z < 0", lhs_tex=r"\frac{d}{dz}\max(0, z)\Big|_{z < 0}"),
        ExactValue(sympy.Subs(r.derivative, z, 0), 0, "ReLU, convention at 0", "symgrad takes the left derivative at the kink.",
                   lhs_tex=r"\varphi'_{\mathrm{ReLU}}(0)"),
        Identity(sympy.Derivative(leaky_relu(zp, alpha).rewrite(sympy.Piecewise), zp), 1, "LeakyReLU, z > 0",
                 lhs_tex=r"\frac{d}{dz}\max(\alpha z, z)\Big|_{z > 0}"),
        Identity(sympy.Derivative(leaky_relu(zn, alpha).rewrite(sympy.Piecewise), zn), leaky_neg, "LeakyReLU, z < 0",
                 lhs_tex=r"\frac{d}{dz}\max(\alpha z, z)\Big|_{z < 0}"),
        ExactValue(sympy.Subs(lr.derivative, z, 0), a100, "LeakyReLU, convention at 0", "symgrad's default $\\alpha = 1/100$: $\\varphi'(0) = \\alpha$.",
                   lhs_tex=r"\varphi'_{\mathrm{LeakyReLU}}(0)"),
        Identity(sympy.Derivative(elu(zp, alpha).rewrite(sympy.Piecewise), zp), 1, "ELU, z > 0",
                 lhs_tex=r"\frac{d}{dz}\,\mathrm{ELU}_\alpha(z)\Big|_{z > 0}"),
        Identity(sympy.Derivative(elu(zn, alpha).rewrite(sympy.Piecewise), zn), alpha * exp(zn), "ELU, z < 0",
                 lhs_tex=r"\frac{d}{dz}\,\mathrm{ELU}_\alpha(z)\Big|_{z < 0}"),
        Identity(sympy.Subs(el.derivative, z, zn), exp(zn), "symgrad's ELU', z < 0", "symgrad's default $\\alpha = 1$.",
                 lhs_tex=r"\texttt{symgrad}\ \mathrm{ELU}'(z)\Big|_{z < 0}"),
    ]

    def cross():
        x = np.array([-3.0, -1e-9, 0.0, 1e-9, 2.0])
        assert list(r.grad(x)) == [0, 0, 0, 1, 1]
        assert list(lr.grad(x)) == [0.01, 0.01, 0.01, 1, 1]
        assert np.allclose(el.grad(x), [math.exp(-3), math.exp(-1e-9), 1, 1, 1])

    return Theorem("2b", "ReLU, LeakyReLU and ELU derivatives",
                   r"$\mathrm{ReLU}'(z) \in \{0, 1\}$ (1 for $z > 0$, 0 for $z \le 0$); $\mathrm{LReLU}_\alpha'(z) \in \{\alpha, 1\}$; "
                   r"$\mathrm{ELU}_\alpha'(z) = 1$ for $z > 0$ and $\alpha e^{z}$ for $z < 0$. At the kink $z = 0$ symgrad uses the left derivative.",
                   steps, crosscheck=cross, crosscheck_doc="symgrad's NumPy derivatives at $-3, -10^{-9}, 0, 10^{-9}, 2$.",
                   source="articles 003, 004", slug="relu_family")


def t_softplus(claimed=None) -> Theorem:
    s = sigmoid(z)
    steps = [
        Identity(sympy.Derivative(log(1 + exp(z)), z), s if claimed is None else claimed, "closed form", lhs_tex=r"\frac{d}{dz}\ln(1+e^{z})"),
        Identity(activation("softplus").derivative, s, "symgrad's softplus'", lhs_tex=r"\texttt{symgrad}\ \mathrm{softplus}'(z)"),
        Certificate(1 - s, sigmoid(-z), "below 1", strict=True),
        Limit(s, z, sympy.oo, 1, "supremum 1, approached"),
    ]
    return Theorem("2c", "softplus derivative", r"$\mathrm{softplus}'(z) = \sigma(z) \in (0, 1)$, and $\sup_z \mathrm{softplus}'(z) = 1$ is not attained.",
                   steps, source="article 003", slug="softplus")


@lru_cache(maxsize=1)  # no arguments: one value, computed once
def _silu_root():
    return CertifiedRoot.near(z * tanh(z / 2) - 2, z, 2, 3, 12, "critical point z*", "Where $\\varphi'' = 0$ for $z > 0$.")


def t_silu(lo=Q("1.0998"), hi=Q("1.0999")) -> Theorem:
    s = sigmoid(z)
    d = s * (1 + z * (1 - s))
    root = _silu_root()
    env = {z: (root.lo, root.hi)}
    second = Identity(sympy.Derivative(d, z), s * (1 - s) * (2 - z * tanh(z / 2)), "SiLU''")
    sym = Identity(d + sympy.Subs(d, z, -z), 1, "symmetry", "So $\\varphi'(-z) = 1 - \\varphi'(z)$.", lhs_tex=r"\varphi'(z) + \varphi'(-z)")
    incr = Certificate(sympy.diff(zp * tanh(zp / 2), zp), tanh(zp / 2) + zp / (2 * sympy.cosh(zp / 2) ** 2), "z tanh(z/2) increases",
                       "For $z > 0$: so $2 - z\\tanh(z/2)$ has one positive root $z^*$, and (being even) is positive for $|z| < z^*$, negative beyond.", strict=True)
    lim_hi, lim_lo = Limit(d, z, sympy.oo, 1, "limit at +oo"), Limit(d, z, -sympy.oo, 0, "limit at -oo")
    value = Enclosure(d, lo, hi, "sup value", "$\\varphi'(z^*)$ over the certified bracket of $z^*$.", env=env, expr_tex=r"\varphi'(z^*)")
    steps = [
        Identity(sympy.Derivative(z * s, z), d, "SiLU'"), second, sym, incr, root, lim_hi, lim_lo, value,
        Implies([second, incr, root, sym, lim_hi, lim_lo, value],
                r"\sup_z |\varphi'(z)| = \varphi'(z^*) \in [%s, %s], \quad \min_z \varphi' = 1 - \varphi'(z^*)" % (float(lo), float(hi)),
                "maximum at z*", rule="the sign of $\\varphi''$ makes $\\varphi'$ increase on $[-z^*, z^*]$ and decrease outside; with the limits 1 and 0 "
                                   "the maximum is $\\varphi'(z^*)$, and by symmetry $|\\min| < \\max$"),
    ]

    def cross():
        x = np.linspace(-30, 30, 600001)
        g = activation("silu").grad(x)
        assert float(lo) <= g.max() <= float(hi) and abs(g.min()) < g.max()

    return Theorem("2d", "SiLU: supremum of the derivative",
                   r"For $\varphi(z) = z\sigma(z)$: $\sup_z|\varphi'(z)| = \varphi'(z^*) \in [%s, %s]$, where $z^* \approx 2.3994$ is the positive root of $z\tanh(z/2) = 2$." % (float(lo), float(hi)),
                   steps, crosscheck=cross, crosscheck_doc="the maximum of symgrad's NumPy SiLU$'$ on a fine grid of $[-30, 30]$.", slug="silu")


def t_gelu(sup=(1 + sympy.erf(1)) / 2 + exp(-1) / sqrt(sympy.pi)) -> Theorem:
    g = activation("gelu")
    d = g.derivative
    pdf = exp(-z ** 2 / 2) / sqrt(2 * sympy.pi)
    def cross():
        top = activation("gelu").grad(np.linspace(-20, 20, 400001)).max()
        assert abs(top - 1.1289) < 1e-4

    second = Identity(sympy.Derivative(d, z), pdf * (2 - z ** 2), "GELU''")
    crit = Solve(2 - z ** 2, z, sympy.FiniteSet(-sqrt(2), sqrt(2)), "critical points")
    sym = Identity(d + sympy.Subs(d, z, -z), 1, "symmetry", "So $\\varphi'(-z) = 1 - \\varphi'(z)$.", lhs_tex=r"\varphi'(z) + \varphi'(-z)")
    lim_hi, lim_lo = Limit(d, z, sympy.oo, 1, "limit at +oo"), Limit(d, z, -sympy.oo, 0, "limit at -oo")
    value = ExactValue(sympy.Subs(d, z, sqrt(2)), sup, "sup value", lhs_tex=r"\varphi'(\sqrt{2})")
    numeric = Enclosure(sup, Q("1.1289"), Q("1.1290"), "numeric value")
    steps = [
        Identity(sympy.Derivative(g.expr, z), d, "GELU'", lhs_tex=r"\frac{d}{dz}\,z\,\Phi(z)"),
        second, crit, sym, lim_hi, lim_lo, value, numeric,
        Implies([second, crit, sym, lim_hi, lim_lo, value, numeric], r"\sup_z |\varphi'(z)| = \varphi'(\sqrt 2)", "maximum at sqrt 2",
                rule="$\\varphi''$ vanishes only at $\\pm\\sqrt 2$, so the continuous $\\varphi'$ has its extrema there or in the limits 0 and 1; "
                     "$\\varphi'(\\sqrt 2) > 1$, and by symmetry $\\varphi'(-\\sqrt 2) = 1 - \\varphi'(\\sqrt 2) > -1$"),
    ]
    return Theorem("2e", "GELU: supremum of the derivative",
                   r"For $\varphi(z) = z\Phi(z)$: $\sup_z |\varphi'(z)| = \varphi'(\sqrt 2) = %s \approx 1.1289$." % sympy.latex(sup),
                   steps, crosscheck=cross,
                   crosscheck_doc="the maximum of symgrad's NumPy GELU$'$ on a fine grid.", slug="gelu")
