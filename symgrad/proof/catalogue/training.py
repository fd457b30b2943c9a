"""Theorems 9, 12 and 13: what gradient descent does with the gradient — the update rule,
the learning-rate threshold, and the saddle point of a two-layer linear chain."""

from __future__ import annotations

import math

import numpy as np
import sympy
from sympy import Rational as Q

from symgrad import numeric as _numeric
from symgrad.symbolic import build as _build
from symgrad.proof.engine import Certificate, ExactValue, Identity, Implies, Induction, Limit, Solve, Theorem
from symgrad.proof.catalogue._common import SIG, chain_forward, settings
from symgrad.proof.catalogue.chains import _regroup

__all__ = ["t_update", "t_learning_rate", "t_saddle"]


# =============================================================================================
# 9. the update rule
# =============================================================================================


def t_update(new=Q("2.4999")) -> Theorem:
    a_, delta_, w_, alpha_, g_ = sympy.symbols("a delta w alpha g", real=True)
    steps = [
        ExactValue(sympy.Subs(a_ * delta_, (a_, delta_), (Q("0.1"), Q("0.001"))), Q("0.0001"), "the gradient",
                   "$\\partial C/\\partial w = a\\,\\delta$ (Theorem 3) at $a = 0.1$, $\\delta = 0.001$.", lhs_tex=r"0.1 \times 0.001"),
        ExactValue(sympy.Subs(w_ - alpha_ * g_, (w_, alpha_, g_), (Q("2.5"), 1, Q("0.0001"))), new, "the update",
                   "$w - \\alpha\\,\\partial C/\\partial w$ at $w = 2.5$, $\\alpha = 1$.", lhs_tex=r"2.5 - 1 \cdot 0.0001"),
        _regroup(),
        Implies([_regroup()], r"\Delta b_1 = \prod_{k=1}^{L-1}\sigma'(z_k)\,w_{k+1}\cdot\Delta b_L,\qquad |\Delta b_1| \le 4^{-(L-1)}|\Delta b_L| \text{ if all } |w_k| \le 1",
                "updates scale as gradients", rule="$\\Delta b_l = -\\alpha\\,\\partial C/\\partial b_l$ with Theorems 3 and 4"),
    ]

    def cross():
        net = _build.chain(5)
        p = _numeric.sample(net, init="uniform", seed=3)
        g = _numeric.backprop(net, p).grads
        w = [float(p["w%d" % i]) for i in range(1, 6)]
        b = [float(p["b%d" % i]) for i in range(1, 6)]
        zs, _ = chain_forward(w, b, float(p["a0"]))
        chain = math.prod(float(SIG.grad(np.float64(zs[i]))) * w[i + 1] for i in range(4))
        step1, step5 = -1.0 * float(g["b1"]), -1.0 * float(g["b5"])
        assert math.isclose(step1, chain * step5, rel_tol=1e-10)
        assert 2.5 - 1 * 0.1 * 0.001 == 2.4999

    return Theorem("9", "The update rule W <- W - alpha dL/dW",
                   r"Under $W \leftarrow W - \alpha\,\partial C/\partial W$, the first layer's update is the last layer's times the chain factor "
                   r"$\prod_{k=1}^{L-1}\sigma'(z_k)w_{k+1}$. Worked numbers: $0.1 \times 0.001 = 0.0001$ and $2.5 - 1\cdot 0.0001 = %s$." % new,
                   steps, crosscheck=cross, crosscheck_doc="one gradient step on a depth-5 chain with symgrad's backprop: the update ratio is the chain factor.",
                   source="article 000", slug="update")


# =============================================================================================
# 12. learning rate
# =============================================================================================


def t_learning_rate(limit=None) -> Theorem:
    eta, lam = sympy.Symbol("eta", real=True), sympy.Symbol("lambda", positive=True)
    w, w0 = sympy.Symbol("w", real=True), sympy.Symbol("w_0", real=True)
    t = sympy.Symbol("t", integer=True, nonnegative=True)
    limit = 2 / lam if limit is None else limit
    q = 1 - eta * lam
    eps = sympy.Symbol("epsilon", positive=True)
    iterates = Induction(t, 0, [ExactValue(sympy.Mul(sympy.Pow(q, 0, evaluate=False), w0, evaluate=False), w0, "t = 0", lhs_tex=r"q^{0} w_{0}")],
                         [Identity(q * (q ** t * w0), q ** (t + 1) * w0, "t -> t+1")], "iterates", statement_tex=r"w_t = (1 - \eta\lambda)^{t} w_0")
    conv = Solve(sympy.Abs(q) < 1, eta, sympy.Interval.open(0, limit), "convergence", eq_tex=r"|1 - \eta\lambda| < 1")
    div = Solve(sympy.Abs(q) > 1, eta, sympy.Union(sympy.Interval.open(-sympy.oo, 0), sympy.Interval.open(limit, sympy.oo)), "divergence",
                eq_tex=r"|1 - \eta\lambda| > 1")
    to0 = Limit((1 + eps) ** (-t), t, sympy.oo, 0, "|q| < 1: |q|^t -> 0", "With $|q| = 1/(1+\\epsilon)$, $\\epsilon > 0$.")
    toinf = Limit((1 + eps) ** t, t, sympy.oo, sympy.oo, "|q| > 1: |q|^t -> oo", "With $|q| = 1 + \\epsilon$, $\\epsilon > 0$.")
    steps = [
        Identity(w - eta * sympy.diff(lam * w ** 2 / 2, w), q * w, "one step"),
        iterates, conv, div,
        to0, toinf,
        Implies([iterates, conv, div, to0, toinf], r"w_t \to 0 \iff 0 < \eta < 2/\lambda \ (w_0 \ne 0);\quad |w_t| \to \infty \text{ for } \eta > 2/\lambda",
                "limit of the iterates", rule="$|w_t| = |q|^t|w_0|$ (the iterates); $|q| < 1$ means $|q| = 1/(1+\\epsilon)$ and $|q| > 1$ means "
                                   "$|q| = 1 + \\epsilon$ for some $\\epsilon > 0$; the two limits"),
    ]

    def cross():
        lam_, w_ = 2.0, 1.0
        for eta_, conv in ((0.1, True), (0.99, True), (1.01, False), (1.5, False)):
            v = w_
            for _ in range(2000):
                v -= eta_ * lam_ * v
            assert (abs(v) < 1e-6) == conv

    return Theorem("12", "Learning rate", r"Gradient descent $w \leftarrow w - \eta\,\partial_w(\lambda w^2/2)$, $\lambda > 0$, converges (for $w_0 \ne 0$) iff $0 < \eta < %s$, and diverges for $\eta > %s$." % (sympy.latex(limit), sympy.latex(limit)),
                   steps, crosscheck=cross, crosscheck_doc="2000 iterations with $\\lambda = 2$ and $\\eta \\in \\{0.1, 0.99, 1.01, 1.5\\}$.",
                   source="article 003", slug="learning_rate")


# =============================================================================================
# 13. saddle point
# =============================================================================================


def t_saddle(eigen=(-1, 1)) -> Theorem:
    w1, w2 = sympy.Symbol("w_1", real=True), sympy.Symbol("w_2", real=True)
    w2nz = sympy.Symbol("w_2", real=True, nonzero=True)
    mu = sympy.Symbol("mu")
    tp, qp = sympy.Symbol("t", positive=True), sympy.Symbol("q", positive=True)
    tq = 1 / (1 + qp)
    f = (1 - w1 * w2) ** 2 / 2
    H = sympy.hessian(f, (w1, w2)).subs({w1: 0, w2: 0})
    steps = [
        Identity(sympy.Derivative(f, w1), -(1 - w1 * w2) * w2, "df/dw1"),
        Identity(sympy.Derivative(f, w2), -(1 - w1 * w2) * w1, "df/dw2"),
        ExactValue(sympy.Subs(sympy.Derivative(f, w1) ** 2 + sympy.Derivative(f, w2) ** 2, (w1, w2), (0, 0)), 0, "critical at 0",
                   lhs_tex=r"\|\nabla f(0, 0)\|^2"),
        Identity(H.charpoly(mu).as_expr(), sympy.expand((mu - eigen[0]) * (mu - eigen[1])), "Hessian at 0",
                 "The characteristic polynomial of $\\nabla^2 f(0) = %s$." % sympy.latex(H),
                 lhs_tex=r"\det\big(\mu I - \nabla^2 f(0)\big)"),
        Certificate(f.subs({w1: tp, w2: -tp}) - f.subs({w1: 0, w2: 0}), tp ** 2 * (2 + tp ** 2) / 2, "up along (t, -t)",
                    "For every $t > 0$.", strict=True, expr_tex=r"f(t, -t) - f(0, 0)"),
        Certificate(f.subs({w1: 0, w2: 0}) - f.subs({w1: tq, w2: tq}), tq ** 2 * (1 + 4 * qp + 2 * qp ** 2) / (2 * (1 + qp) ** 2), "down along (t, t)",
                    "For every $0 < t < 1$, written $t = 1/(1+q)$ with $q > 0$; with the critical point, the origin is a saddle.",
                    strict=True, expr_tex=r"f(0, 0) - f(t, t)\ \big(t = \tfrac{1}{1+q}\big)"),
        Certificate(f, f, "f >= 0", "A square."),
        Solve(1 - w1 * w2nz, w1, sympy.FiniteSet(1 / w2nz), "zero set", "So $f = 0$ (its minimum) exactly on $w_1w_2 = 1$; $f(0) = 1/2$."),
    ]

    def cross():
        from hypothesis import given, strategies as st

        fn = lambda a, b: 0.5 * (1 - a * b) ** 2  # noqa: E731

        @settings()
        @given(st.floats(1e-3, 0.5))
        def prop(t_):
            assert fn(t_, t_) < fn(0, 0) < fn(t_, -t_)

        prop()

    return Theorem("13", "Saddle point", r"$f(w_1, w_2) = \frac12(1 - w_1w_2)^2$, the loss of a two-layer linear chain, has a critical point at the origin whose Hessian "
                   r"eigenvalues are $%s$ and $%s$. It is a saddle: $f(t, -t) > f(0, 0) > f(t, t)$ for $0 < t < 1$. Its minima ($f = 0$) lie on $w_1w_2 = 1$." % eigen,
                   steps, crosscheck=cross, crosscheck_doc="Hypothesis: $f(t, t) < f(0, 0) < f(t, -t)$ for small $t$ (down one diagonal, up the other).",
                   source="article 003", slug="saddle")
