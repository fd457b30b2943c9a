r"""Theorems 16a–16e: the exact cases of mean-field signal propagation at initialisation.

For a wide dense network with ``W_ij ~ N(0, σ_w²/n_in)`` and ``b_i ~ N(0, σ_b²)`` the
pre-activation variance follows the length map ``q ↦ σ_w² E[φ(√q Z)²] + σ_b²`` and gradients
grow per layer by ``χ₁ = σ_w² E[φ'(√q* Z)²]`` (Poole et al. 2016; Schoenholz et al. 2017, eqs. 3
and 5).  Where the Gaussian expectations have closed forms the catalogue proves them exactly:
ReLU (16a), leaky ReLU (16b), the identity (16c), erf (16d, Williams 1997) and tanh at σ_b² = 0
(16e).  Each builder takes the claimed constant as a parameter, so a false variant is the same
proof with a wrong claim.  The numeric cross-checks compare with
:mod:`symgrad.theory.meanfield`, which computes the same quantities for any activation.
"""

from __future__ import annotations

import math

import numpy as np
import sympy
from sympy import Integral, Rational as Q, erf, exp, oo, pi, sqrt, tanh

from symgrad.spec.activations import leaky_relu, relu, z
from symgrad.proof.engine import Certificate, ExactValue, Identity, Implies, Induction, Limit, Solve, Theorem
from symgrad.proof.catalogue._common import alpha, zn, zp

__all__ = ["t_mf_relu", "t_mf_leaky", "t_mf_identity", "t_mf_erf", "t_mf_tanh"]

x = sympy.Symbol("x", real=True)
xp = sympy.Symbol("x", positive=True)
xn = sympy.Symbol("x", negative=True)
q = sympy.Symbol("q", positive=True)
w2 = sympy.Symbol("sigma_w^2", positive=True)
b2 = sympy.Symbol("sigma_b^2", positive=True)
q0 = sympy.Symbol("q_0", nonnegative=True)
eps = sympy.Symbol("epsilon", positive=True)
ell = sympy.Symbol("l", integer=True, nonnegative=True)
PDF = exp(-x ** 2 / 2) / sqrt(2 * pi)  # the standard normal density of Z
_E = r"\mathbb E"


def _gauss(f, lo=-oo, hi=oo):
    """∫_lo^hi f(x) φ(x) dx (unevaluated) for the standard normal density φ."""
    return Integral(f * PDF, (x, lo, hi))


# =============================================================================================
# 16a. ReLU
# =============================================================================================


def t_mf_relu(chi=None, critical=None, moment=None) -> Theorem:
    """``chi``: the claimed χ₁ (default σ_w²/2); ``critical``: the claimed critical σ_w² (2);
    ``moment``: the claimed E[ReLU(√q Z)²] (q/2)."""
    chi = w2 / 2 if chi is None else chi
    critical = 2 if critical is None else critical
    moment = q / 2 if moment is None else moment
    s = w2 / 2  # the slope of the length map
    qs = b2 / (1 - s)
    M = lambda v: s * v + b2  # noqa: E731 - the length map, once E[ReLU(√q Z)²] = q/2 is shown
    iterates = Induction(
        ell, 0,
        [ExactValue(sympy.Add(sympy.Mul(sympy.Pow(s, 0, evaluate=False), q0 - qs, evaluate=False), qs, evaluate=False), q0, "l = 0",
                    lhs_tex=r"(\sigma_w^2/2)^0 (q_0 - q^*) + q^*")],
        [Identity(M(s ** ell * (q0 - qs) + qs), s ** (ell + 1) * (q0 - qs) + qs, "l -> l+1",
                  "One step of the length map $q \\mapsto \\sigma_w^2 q/2 + \\sigma_b^2$.")],
        "iterates", statement_tex=r"q^l = (\sigma_w^2/2)^{l}\,(q_0 - q^*) + q^*,\quad q^* = \frac{\sigma_b^2}{1 - \sigma_w^2/2}\ (\sigma_w^2 \ne 2)")
    fixed = Identity(M(qs), qs, "fixed point", "$q^* = \\sigma_b^2/(1 - \\sigma_w^2/2)$ solves $q = \\sigma_w^2 q/2 + \\sigma_b^2$.",
                     lhs_tex=r"\sigma_w^2 q^*/2 + \sigma_b^2")
    to_qs = Limit((1 + eps) ** (-ell), ell, oo, 0, "sigma_w^2 < 2: (sigma_w^2/2)^l -> 0", "With $\\sigma_w^2/2 = 1/(1+\\epsilon)$, $\\epsilon > 0$.")
    gap = Certificate(q0 - b2 / (1 - (1 + eps)), q0 + b2 / eps, "sigma_w^2 > 2: q_0 - q* > 0", "With $\\sigma_w^2/2 = 1 + \\epsilon$: $q^* < 0 \\le q_0$.",
                      strict=True, expr_tex=r"q_0 - q^*\big|_{\sigma_w^2/2 = 1 + \epsilon}")
    to_inf = Limit((1 + eps) ** ell, ell, oo, oo, "sigma_w^2 > 2: (sigma_w^2/2)^l -> oo", "With $\\sigma_w^2/2 = 1 + \\epsilon$.")
    neutral = ExactValue(sympy.Subs(w2 * q / 2 + sympy.Symbol("s_b"), (w2, sympy.Symbol("s_b")), (2, 0)), q, "sigma_w^2 = 2, sigma_b^2 = 0: every q",
                         "The length map is the identity.", lhs_tex=r"\sigma_w^2 q/2 + \sigma_b^2\,\big|_{\sigma_w^2 = 2,\ \sigma_b^2 = 0}")
    steps = [
        Identity(relu(sqrt(q) * xp, evaluate=False), sqrt(q) * xp, "ReLU, z > 0", lhs_tex=r"\mathrm{ReLU}(\sqrt q\,x)\big|_{x > 0}"),
        Identity(relu(sqrt(q) * xn, evaluate=False), 0, "ReLU, z < 0", lhs_tex=r"\mathrm{ReLU}(\sqrt q\,x)\big|_{x < 0}"),
        Identity(_gauss(q * x ** 2, 0), moment, "E[relu(sqrt(q) Z)^2]", "The part $Z < 0$ contributes 0.",
                 lhs_tex=r"%s[\mathrm{ReLU}(\sqrt q Z)^2] = \int_0^\infty q x^2 \frac{e^{-x^2/2}}{\sqrt{2\pi}}\,dx" % _E),
        Identity(sympy.Derivative(relu(zp), zp), 1, "ReLU' = H", "$\\mathrm{ReLU}'(z) = 1$ for $z > 0$ and $0$ for $z < 0$ (Theorem 2b).",
                 lhs_tex=r"\frac{d}{dz}\mathrm{ReLU}(z)\Big|_{z > 0}"),
        Identity(_gauss(1, 0), Q(1, 2), "E[H(Z)^2]", lhs_tex=r"%s[H(\sqrt q Z)^2] = \int_0^\infty \frac{e^{-x^2/2}}{\sqrt{2\pi}}\,dx" % _E),
        Identity(w2 * _gauss(1, 0), chi, "chi_1", "$\\chi_1 = \\sigma_w^2 %s[\\mathrm{ReLU}'(\\sqrt{q^*} Z)^2]$, the same at every $q^*$." % _E,
                 lhs_tex=r"\sigma_w^2\,%s[H(\sqrt{q^*} Z)^2]" % _E),
        Solve(chi - 1, w2, sympy.FiniteSet(critical), "critical", "Where $\\chi_1 = 1$.", eq_tex=r"\chi_1 = %s = 1" % sympy.latex(chi)),
        fixed, iterates, to_qs, gap, to_inf, neutral,
        Implies([fixed, iterates, to_qs, gap, to_inf, neutral],
                r"\sigma_w^2 < 2:\ q^l \to q^* = \frac{\sigma_b^2}{1 - \sigma_w^2/2};\quad \sigma_w^2 > 2,\ \sigma_b^2 > 0:\ q^l \to \infty;\quad \sigma_w^2 = 2,\ \sigma_b^2 = 0:\ q^l = q_0",
                "fate of the length map",
                rule="by the iterates, $q^l - q^* = (\\sigma_w^2/2)^l (q_0 - q^*)$; the two limits, with $q_0 - q^* > 0$ when $\\sigma_w^2 > 2$; "
                     "at $\\sigma_w^2 = 2$, $\\sigma_b^2 = 0$ the map is the identity"),
    ]

    def cross():
        from symgrad.theory import meanfield

        for a, b in ((Q(1), Q(0)), (Q(3, 2), Q(1, 4)), (Q(1, 2), Q(2))):
            assert meanfield.chi1("relu", a, b).exact == a / 2
            assert meanfield.q_star("relu", a, b).q.exact == b / (1 - a / 2)
        assert meanfield.critical_sigma_w2("relu").exact == 2
        assert meanfield.q_star("relu", 2, 0, q0=3).neutral
        try:
            meanfield.q_star("relu", 3, Q(1, 10))
        except Exception as exc:  # no finite fixed point
            assert "no finite fixed point" in str(exc)
        else:
            raise AssertionError("ReLU at sigma_w^2 = 3 reported a finite fixed point")
        rng = np.random.default_rng(0)
        zs = rng.standard_normal(400_000)
        assert abs(np.mean(np.maximum(math.sqrt(2.5) * zs, 0) ** 2) / (2.5 / 2) - 1) < 0.02

    return Theorem("16a", "Mean field: ReLU",
                   r"For $Z \sim N(0, 1)$: $%s[\mathrm{ReLU}(\sqrt q Z)^2] = %s$ and $%s[H(Z)^2] = 1/2$, so $\chi_1 = %s$, critical at "
                   r"$(\sigma_w^2, \sigma_b^2) = (%s, 0)$. The length map $q \mapsto \sigma_w^2 q/2 + \sigma_b^2$ converges to "
                   r"$q^* = \sigma_b^2/(1 - \sigma_w^2/2)$ for $\sigma_w^2 < 2$, diverges for $\sigma_w^2 > 2$ at $\sigma_b^2 > 0$, "
                   r"and keeps every $q$ at $\sigma_w^2 = 2$, $\sigma_b^2 = 0$."
                   % (_E, sympy.latex(moment), _E, sympy.latex(chi), sympy.latex(critical)),
                   steps, crosscheck=cross,
                   crosscheck_doc="symgrad.theory.meanfield's chi1, q_star and critical_sigma_w2 for ReLU at three points, the neutral map and "
                                  "the divergent one; Monte Carlo (400,000 draws) of $%s[\\mathrm{ReLU}(\\sqrt{2.5} Z)^2]$." % _E,
                   source="Poole et al. 2016; Schoenholz et al. 2017; He et al. 2015", slug="meanfield_relu")


# =============================================================================================
# 16b. leaky ReLU
# =============================================================================================


def t_mf_leaky(chi=None) -> Theorem:
    """``chi``: the claimed χ₁ (default σ_w²(1 + α²)/2)."""
    chi = w2 * (1 + alpha ** 2) / 2 if chi is None else chi
    steps = [
        Identity(leaky_relu(sqrt(q) * xp, alpha).rewrite(sympy.Piecewise), sqrt(q) * xp, "LeakyReLU, z > 0",
                 lhs_tex=r"\mathrm{LReLU}_\alpha(\sqrt q\,x)\big|_{x > 0}"),
        Identity(leaky_relu(sqrt(q) * xn, alpha).rewrite(sympy.Piecewise), alpha * sqrt(q) * xn, "LeakyReLU, z < 0",
                 lhs_tex=r"\mathrm{LReLU}_\alpha(\sqrt q\,x)\big|_{x < 0}"),
        Identity(_gauss(q * x ** 2, 0) + _gauss(alpha ** 2 * q * x ** 2, -oo, 0), (1 + alpha ** 2) * q / 2, "second moment",
                 lhs_tex=r"%s[\mathrm{LReLU}_\alpha(\sqrt q Z)^2] = \int_0^\infty q x^2 \varphi(x)\,dx + \int_{-\infty}^0 \alpha^2 q x^2 \varphi(x)\,dx" % _E),
        Identity(sympy.Derivative(leaky_relu(zp, alpha).rewrite(sympy.Piecewise), zp), 1, "slope, z > 0",
                 lhs_tex=r"\frac{d}{dz}\mathrm{LReLU}_\alpha(z)\Big|_{z > 0}"),
        Identity(sympy.Derivative(leaky_relu(zn, alpha).rewrite(sympy.Piecewise), zn), alpha, "slope, z < 0",
                 lhs_tex=r"\frac{d}{dz}\mathrm{LReLU}_\alpha(z)\Big|_{z < 0}"),
        Identity(w2 * (_gauss(1, 0) + _gauss(alpha ** 2, -oo, 0)), chi, "chi_1",
                 "$\\chi_1 = \\sigma_w^2 %s[\\varphi'(\\sqrt{q^*} Z)^2]$, the same at every $q^*$." % _E,
                 lhs_tex=r"\sigma_w^2\Big(\int_0^\infty \varphi(x)\,dx + \int_{-\infty}^0 \alpha^2\varphi(x)\,dx\Big)"),
        Solve(chi - 1, w2, sympy.FiniteSet(2 / (1 + alpha ** 2)), "critical", "Where $\\chi_1 = 1$.", eq_tex=r"\chi_1 = %s = 1" % sympy.latex(chi)),
    ]

    def cross():
        from symgrad.theory import meanfield

        a = Q(1, 100)  # symgrad's default slope
        for s in (Q(1), Q(3, 2)):
            assert meanfield.chi1("leaky_relu", s, 0).exact == s * (1 + a ** 2) / 2
        assert meanfield.critical_sigma_w2("leaky_relu").exact == 2 / (1 + a ** 2)
        rng = np.random.default_rng(1)
        zs = rng.standard_normal(400_000)
        g = np.where(zs > 0, 1.0, 0.2)  # α = 0.2
        assert abs(np.mean(g ** 2) / ((1 + 0.04) / 2) - 1) < 0.01

    return Theorem("16b", "Mean field: leaky ReLU",
                   r"For $\mathrm{LReLU}_\alpha(z) = \max(\alpha z, z)$, $0 < \alpha$: $%s[\mathrm{LReLU}_\alpha(\sqrt q Z)^2] = (1 + \alpha^2) q/2$ "
                   r"and $\chi_1 = %s$, critical at $\sigma_w^2 = 2/(1 + \alpha^2)$." % (_E, sympy.latex(chi)),
                   steps, crosscheck=cross,
                   crosscheck_doc="symgrad.theory.meanfield's chi1 and critical_sigma_w2 for LeakyReLU ($\\alpha = 1/100$); Monte Carlo of "
                                  "$%s[\\varphi'(Z)^2]$ at $\\alpha = 0.2$." % _E,
                   source="Schoenholz et al. 2017; Pennington et al. 2017", slug="meanfield_leaky_relu")


# =============================================================================================
# 16c. the identity
# =============================================================================================


def t_mf_identity(chi=None) -> Theorem:
    """``chi``: the claimed χ₁ (default σ_w²)."""
    chi = w2 if chi is None else chi
    qs = b2 / (1 - w2)
    steps = [
        Identity(_gauss(q * x ** 2), q, "E[(sqrt(q) Z)^2]", lhs_tex=r"%s[(\sqrt q Z)^2]" % _E),
        Identity(w2 * _gauss(1), chi, "chi_1", "$\\varphi' = 1$ everywhere.", lhs_tex=r"\sigma_w^2\,%s[1^2]" % _E),
        Solve(chi - 1, w2, sympy.FiniteSet(1), "critical", eq_tex=r"\chi_1 = %s = 1" % sympy.latex(chi)),
        Identity(w2 * qs + b2, qs, "fixed point", "$q^* = \\sigma_b^2/(1 - \\sigma_w^2)$ for $\\sigma_w^2 \\ne 1$.",
                 lhs_tex=r"\sigma_w^2 q^* + \sigma_b^2"),
    ]

    def cross():
        from symgrad.theory import meanfield

        for a, b in ((Q(1, 2), Q(1)), (Q(3, 4), Q(1, 8))):
            assert meanfield.chi1("linear", a, b).exact == a
            assert meanfield.q_star("linear", a, b).q.exact == b / (1 - a)
        assert meanfield.critical_sigma_w2("linear").exact == 1

    return Theorem("16c", "Mean field: the identity",
                   r"For $\varphi(z) = z$: $%s[(\sqrt q Z)^2] = q$, $\chi_1 = %s$, critical at $\sigma_w^2 = 1$; for $\sigma_w^2 < 1$ the length map "
                   r"has the fixed point $q^* = \sigma_b^2/(1 - \sigma_w^2)$." % (_E, sympy.latex(chi)),
                   steps, crosscheck=cross, crosscheck_doc="symgrad.theory.meanfield's chi1, q_star and critical_sigma_w2 for the identity.",
                   source="Saxe et al. 2014; Schoenholz et al. 2017", slug="meanfield_identity")


# =============================================================================================
# 16d. erf (Williams 1997)
# =============================================================================================


def t_mf_erf(closed=None, critical=None) -> Theorem:
    """``closed``: the claimed E[erf(aZ)²] as a function of ``a`` (default (2/π) asin(2a²/(1 + 2a²)));
    ``critical``: the claimed critical σ_w² of erf(b z) at σ_b² = 0 (π/(4b²))."""
    a, b, c = (sympy.Symbol(nm, positive=True) for nm in ("a", "b", "c"))
    z_ = sympy.Symbol("z", real=True)
    closed = 2 / pi * sympy.asin(2 * a ** 2 / (1 + 2 * a ** 2)) if closed is None else closed
    critical = pi / (4 * b ** 2) if critical is None else critical
    K = 4 / (sqrt(pi) * sqrt(2 * pi))
    cc = 1 + 2 * a ** 2
    dF = 8 * a / (pi * (1 + 2 * a ** 2) * sqrt(1 + 4 * a ** 2))
    dens = Identity(sympy.Derivative(erf(a * x) ** 2 * PDF, a), K * erf(a * x) * x * exp(-cc * x ** 2 / 2), "differentiate in a",
                    "The integrand of $F(a) = %s[\\mathrm{erf}(aZ)^2]$, differentiated in $a$; the two Gaussian factors combine." % _E,
                    lhs_tex=r"\frac{\partial}{\partial a}\Big(\mathrm{erf}(ax)^2\,\frac{e^{-x^2/2}}{\sqrt{2\pi}}\Big)")
    anti = Identity(sympy.Derivative(-erf(a * z_) * exp(-c * z_ ** 2 / 2) / c, z_),
                    erf(a * z_) * z_ * exp(-c * z_ ** 2 / 2) - 2 * a / (c * sqrt(pi)) * exp(-(a ** 2 + c / 2) * z_ ** 2), "antiderivative",
                    "Integration by parts of $\\int \\mathrm{erf}(az)\\,z\\,e^{-cz^2/2}\\,dz$.",
                    lhs_tex=r"\frac{d}{dz}\Big(-\frac{\mathrm{erf}(az)\,e^{-cz^2/2}}{c}\Big)")
    lim_hi = Limit(erf(a * z_) * exp(-c * z_ ** 2 / 2), z_, oo, 0, "boundary at +oo")
    lim_lo = Limit(erf(a * z_) * exp(-c * z_ ** 2 / 2), z_, -oo, 0, "boundary at -oo")
    gauss = Identity(Integral(exp(-(a ** 2 + c / 2) * z_ ** 2), (z_, -oo, oo)), sqrt(2 * pi / (2 * a ** 2 + c)), "Gaussian integral")
    combine = Identity(sympy.Subs(K * 2 * a / (c * sqrt(pi)) * sqrt(2 * pi / (2 * a ** 2 + c)), c, cc), dF, "F'(a)",
                       "The parts above with $c = 1 + 2a^2$.",
                       lhs_tex=r"\frac{4}{\sqrt\pi\sqrt{2\pi}}\cdot\frac{2a}{c\sqrt\pi}\sqrt{\frac{2\pi}{2a^2 + c}}\,\Big|_{c = 1 + 2a^2}")
    dclosed = Identity(sympy.Derivative(closed, a), dF, "derivative of the closed form", lhs_tex=r"\frac{d}{da}\,%s" % sympy.latex(closed))
    at0 = ExactValue(sympy.Subs(closed, a, 0), 0, "closed form at a = 0", lhs_tex=r"%s\,\Big|_{a = 0}" % sympy.latex(closed))
    F0 = Identity(_gauss(erf(a * x).xreplace({a: 0}) ** 2), 0, "F(0)", lhs_tex=r"%s[\mathrm{erf}(0 \cdot Z)^2]" % _E)
    williams = Implies([dens, anti, lim_hi, lim_lo, gauss, combine, dclosed, at0, F0],
                       r"%s[\mathrm{erf}(aZ)^2] = %s\ (a \ge 0),\ \text{so}\ %s[\mathrm{erf}(b\sqrt q Z)^2] = \frac{2}{\pi}\arcsin\frac{2b^2q}{1 + 2b^2q}"
                       % (_E, sympy.latex(closed), _E),
                       "second moment (Williams)",
                       rule="differentiation under the integral sign ($|\\partial_a \\mathrm{erf}(aZ)^2| \\le 4|Z|/\\sqrt\\pi$ is integrable), "
                            "integration by parts with the antiderivative and its limits at $\\pm\\infty$, and: two $C^1$ functions of $a \\ge 0$ "
                            "with equal derivatives and equal values at 0 are equal")
    w = sympy.Symbol("w", real=True)
    p2 = 4 * b ** 2 / (pi * sqrt(1 + 4 * b ** 2 * q))
    prime = Identity(sympy.Derivative(erf(b * w), w), 2 * b / sqrt(pi) * exp(-b ** 2 * w ** 2), "erf'", lhs_tex=r"\frac{d}{dw}\mathrm{erf}(bw)")
    prime2 = Identity(_gauss((2 * b / sqrt(pi) * exp(-b ** 2 * q * x ** 2)) ** 2), p2, "E[phi'(sqrt(q) Z)^2]",
                      lhs_tex=r"%s[\varphi'(\sqrt q Z)^2] = \int \frac{4b^2}{\pi} e^{-2b^2 q x^2}\,\frac{e^{-x^2/2}}{\sqrt{2\pi}}\,dx" % _E)
    steps = [
        dens, anti, lim_hi, lim_lo, gauss, combine, dclosed, at0, F0, williams,
        prime, prime2,
        ExactValue(sympy.Subs(erf(b * w), w, 0), 0, "erf(0) = 0", "So at $\\sigma_b^2 = 0$ the length map fixes $q^* = 0$.",
                   lhs_tex=r"\mathrm{erf}(b \cdot 0)"),
        ExactValue(sympy.Subs(w2 * p2, q, 0), 4 * b ** 2 * w2 / pi, "chi_1 at q* = 0", lhs_tex=r"\sigma_w^2\,%s[\varphi'(\sqrt{q^*} Z)^2]\big|_{q^* = 0}" % _E),
        Solve(4 * b ** 2 * w2 / pi - 1, w2, sympy.FiniteSet(critical), "critical", eq_tex=r"4b^2\sigma_w^2/\pi = 1"),
    ]

    def cross():
        from scipy.special import erf as serf

        from symgrad.theory import meanfield

        assert meanfield.critical_sigma_w2("erf(z)").exact == pi / 4
        def quad(qv, n):  # Gauss-Hermite with n nodes for E[erf(sqrt(q) Z)^2]
            zs, ws = np.polynomial.hermite_e.hermegauss(n)
            return float(np.dot(ws / math.sqrt(2 * math.pi), serf(math.sqrt(float(qv)) * zs) ** 2))

        for qv in (Q(1, 4), Q(1), Q(3)):
            exact = meanfield.length_map("erf(z)", 1, 0, qv).exact
            assert sympy.simplify(exact - 2 / pi * sympy.asin(2 * qv / (1 + 2 * qv))) == 0
            # the error of the coarse rule is estimated by the difference of two resolutions, plus rounding
            coarse, fine = quad(qv, 60), quad(qv, 120)
            assert abs(coarse - float(exact)) <= 2 * abs(coarse - fine) + 1e-14, (qv, coarse, fine, float(exact))

    return Theorem("16d", "Mean field: erf",
                   r"For $Z \sim N(0, 1)$ and $a \ge 0$: $%s[\mathrm{erf}(aZ)^2] = %s$ (Williams 1997) and "
                   r"$%s[\varphi'(\sqrt q Z)^2] = 4b^2/(\pi\sqrt{1 + 4b^2q})$ for $\varphi(z) = \mathrm{erf}(bz)$, $b > 0$; at $\sigma_b^2 = 0$, "
                   r"$q^* = 0$ and $\chi_1 = 4b^2\sigma_w^2/\pi$, critical at $\sigma_w^2 = %s$." % (_E, sympy.latex(closed), _E, sympy.latex(critical)),
                   steps, crosscheck=cross,
                   crosscheck_doc="symgrad.theory.meanfield's length_map and critical_sigma_w2 for erf$(z)$, and Gauss--Hermite quadrature "
                                  "(60 nodes, its error estimated against 120) of $%s[\\mathrm{erf}(\\sqrt q Z)^2]$ at $q = 1/4, 1, 3$." % _E,
                   source="Williams 1997, Computing with infinite networks; Schoenholz et al. 2017", slug="meanfield_erf")


# =============================================================================================
# 16e. tanh at σ_b² = 0
# =============================================================================================


def t_mf_tanh(critical=1) -> Theorem:
    """``critical``: the claimed critical σ_w² at σ_b² = 0 (default 1; PyTorch's gain (5/3)² is not)."""
    t = tanh(sqrt(q) * x)
    slope0 = ExactValue(sympy.Subs(sympy.Derivative(tanh(z) ** 2, z, 2) / 2, z, 0), 1, "tanh^2''(0)/2",
                        lhs_tex=r"\tfrac12\,(\tanh^2)''(0)")
    slope = Implies([slope0], r"\frac{d}{dq}\Big(\sigma_w^2\,%s[\tanh(\sqrt q Z)^2]\Big)\Big|_{q = 0} = \sigma_w^2" % _E, "slope of the map at 0",
                    rule="the Gaussian heat equation $\\frac{d}{dq}%s[f(\\sqrt q Z)] = \\frac12 %s[f''(\\sqrt q Z)]$ (integration by parts), "
                         "at $q = 0$ with $f = \\tanh^2$" % (_E, _E))
    below = Certificate(sympy.diff(zp - tanh(zp), zp), tanh(zp) ** 2, "tanh below the identity",
                        "$\\frac{d}{dz}(z - \\tanh z) = \\tanh^2 z \\ge 0$ and $z - \\tanh z = 0$ at $z = 0$.",
                        expr_tex=r"\frac{d}{dz}(z - \tanh z)")
    steps = [
        ExactValue(sympy.Subs(tanh(z), z, 0), 0, "tanh(0) = 0", lhs_tex=r"\tanh(0)"),
        Identity(w2 * _gauss(t.xreplace({q: 0}) ** 2), 0, "q* = 0 is fixed", "The length map at $q = 0$, $\\sigma_b^2 = 0$.",
                   lhs_tex=r"\sigma_w^2\,%s[\tanh(\sqrt q Z)^2]\big|_{q = 0}" % _E),
        ExactValue(sympy.Subs(sympy.Derivative(tanh(z), z), z, 0), 1, "tanh'(0) = 1", lhs_tex=r"\tanh'(0)"),
        Identity(w2 * _gauss((1 - t.xreplace({q: 0}) ** 2) ** 2), w2, "chi_1 at q* = 0", "At $q^* = 0$ the integrand is $\\tanh'(0)^2$ times the density.",
                   lhs_tex=r"\sigma_w^2\,%s[\tanh'(\sqrt{q^*} Z)^2]\big|_{q^* = 0}" % _E),
        Solve(w2 - 1, w2, sympy.FiniteSet(critical), "critical", "Where $\\chi_1 = \\sigma_w^2 = 1$.", eq_tex=r"\chi_1 = \sigma_w^2 = 1"),
        slope0, slope, below,
        Implies([slope, below], r"q^* = 0 \text{ attracts every } q_0 \text{ iff } \sigma_w^2 \le 1", "stability of q* = 0",
                rule="for $\\sigma_w^2 \\le 1$: $\\tanh^2 t < t^2$ for $t \\ne 0$ (tanh below the identity, and tanh is odd), so the map "
                     "sends $q > 0$ to less than $\\sigma_w^2 q \\le q$ and its iterates decrease to its only fixed point in $[0, q_0]$, which is 0; "
                     "for $\\sigma_w^2 > 1$ its slope $\\sigma_w^2$ at 0 exceeds 1, so 0 repels"),
    ]

    def cross():
        from symgrad.theory import meanfield

        assert meanfield.critical_sigma_w2("tanh").exact == 1
        for s in (Q(1, 2), Q(9, 10), Q(1)):
            fp = meanfield.q_star("tanh", s, 0)
            assert fp.q.exact == 0 and meanfield.chi1("tanh", s, 0).exact == s
        fp = meanfield.q_star("tanh", Q(3, 2), 0)
        assert fp.q.value > 0.1 and fp.stable  # beyond criticality q = 0 repels and a positive q* attracts
        assert meanfield.phase("tanh", Q(25, 9), 0) == "chaotic"  # PyTorch's gain 5/3 is not critical

    return Theorem("16e", "Mean field: tanh without bias",
                   r"For $\varphi = \tanh$ and $\sigma_b^2 = 0$: $q^* = 0$ is a fixed point of the length map for every $\sigma_w^2$, "
                   r"$\chi_1 = \sigma_w^2\tanh'(0)^2 = \sigma_w^2$ there, critical at $\sigma_w^2 = %s$; the map's slope at 0 is $\sigma_w^2$, "
                   r"and $q^* = 0$ is attracting iff $\sigma_w^2 \le 1$." % sympy.latex(critical),
                   steps, crosscheck=cross,
                   crosscheck_doc="symgrad.theory.meanfield's q_star, chi1, phase and critical_sigma_w2 for tanh at $\\sigma_b^2 = 0$.",
                   source="Poole et al. 2016; Schoenholz et al. 2017", slug="meanfield_tanh")
