"""Theorem 17: a softmax output with the log-likelihood cost gives δ^L = a^L − y when Σ y = 1."""

from __future__ import annotations

import numpy as np
import sympy

from symgrad import numeric as _numeric
from symgrad.spec.activations import activation
from symgrad.symbolic import build as _build
from symgrad.proof.engine import Hypothesis, Identity, Theorem

__all__ = ["t_softmax"]

SOFTMAX = activation("softmax")


# =============================================================================================
# 17. softmax + log-likelihood
# =============================================================================================


def _layer(n):
    """z_1..z_n, y_1..y_n (real), a = softmax(z) through the activation's own ``vector``, and free
    coefficients c_j that bundle the n entry identities into one (Σ_j c_j (lhs_j − rhs_j) is 0
    for every c exactly when each entry is)."""
    zs = sympy.symbols("z1:%d" % (n + 1), real=True)
    ys = sympy.symbols("y1:%d" % (n + 1), real=True)
    cs = sympy.symbols("c1:%d" % (n + 1), real=True)
    return zs, ys, cs, SOFTMAX.vector(zs)


def _jacobian(n, sign):
    """∂a_i/∂z_j = a_i(δ_ij − a_j) for every i, j (``sign`` = −1: the flipped, false Jacobian)."""
    zs, _, _, a = _layer(n)
    cij = sympy.symbols("c1:%d" % (n * n + 1), real=True)
    lhs = sum(cij[i * n + j] * sympy.diff(a[i], zs[j]) for i in range(n) for j in range(n))
    rhs = sum(cij[i * n + j] * sign * a[i] * (sympy.KroneckerDelta(i, j) - a[j]) for i in range(n) for j in range(n))
    return Identity(lhs, rhs, "softmax Jacobian, n = %d" % n,
                    "Each entry: $\\partial a_i/\\partial z_j = a_i(\\delta_{ij} - a_j)$, i.e. $\\Sigma'(z) = \\operatorname{diag}(a) - a a^{\\mathsf T}$; "
                    "the free $c_{ij}$ collect the $n^2$ entries into one identity.",
                    lhs_tex=r"\sum_{i,j} c_{ij}\,\frac{\partial a_{i}}{\partial z_{j}}",
                    rhs_tex=r"\sum_{i,j} c_{ij}\,%sa_{i}(\delta_{ij} - a_{j})" % ("" if sign == 1 else "-"))


def _output_delta(n, cost, simplex):
    """Σ_j c_j ∂C/∂z_j = Σ_j c_j (a_j − y_j), with y_n = 1 − Σ_{i<n} y_i when ``simplex``."""
    zs, ys, cs, a = _layer(n)
    C = sum(cost(a[i], ys[i]) for i in range(n))
    on = {ys[-1]: 1 - sum(ys[:-1])} if simplex else {}
    lhs = sum(cs[j] * sympy.diff(C, zs[j]) for j in range(n)).xreplace(on)
    rhs = sum(cs[j] * (a[j] - ys[j]) for j in range(n)).xreplace(on)
    return Identity(lhs, rhs, "output delta, n = %d" % n,
                    ("With $y_{%d} = 1 - \\sum_{i<%d} y_i$ (the hypothesis): " % (n, n) if simplex else "For any $y$: ")
                    + "$\\delta_j = \\sum_i \\frac{\\partial a_i}{\\partial z_j}\\frac{\\partial C}{\\partial a_i} = -y_j + a_j \\sum_i y_i = a_j - y_j$.",
                    lhs_tex=r"\sum_{j} c_{j}\,\frac{\partial C}{\partial z_{j}}", rhs_tex=r"\sum_{j} c_{j}\,(a_{j} - y_{j})")


def _log_likelihood(a, y):
    return -y * sympy.log(a)


def _quadratic(a, y):
    return sympy.Rational(1, 2) * (a - y) ** 2


def _library(n):
    """symgrad's δ^L of ``network([2, n], 'softmax', 'log_likelihood')``, entry by entry, is a^1 − y."""
    net = _build.network([2, n], "softmax", "log_likelihood")
    g = net.gradient("b1")
    closed = g._explicit_matrix(local=True)
    loc = net.local_symbols
    y = net.arrays["y"]
    cs = sympy.symbols("c1:%d" % (n + 1), real=True)
    lhs = sum(cs[j] * closed[j] for j in range(n))
    rhs = sum(cs[j] * (loc["a1[%d]" % j] - y[j]) for j in range(n))
    return Identity(lhs, rhs, "symgrad agrees, n = %d" % n,
                    "symgrad.network([2, n], 'softmax', 'log_likelihood').gradient('b1') is the residual $a^{1} - y$, with no Jacobian factor, "
                    "and states the hypothesis in Gradient.assumptions.",
                    lhs_tex=r"\sum_{j} c_{j} \left[\texttt{network([2, n], ..., 'log\_likelihood').gradient('b1')}\right]_{j}",
                    rhs_tex=r"\sum_{j} c_{j}\,(a^{1}_{j} - y_{j})")


def t_softmax(*, cost=None, simplex=True, jacobian_sign=1) -> Theorem:
    """Nielsen ch. 3 eqs. 78–82.  False variants: ``simplex=False`` (the target need not sum to 1)
    and ``cost=quadratic`` fail at "output delta, n = 2"; ``jacobian_sign=-1`` at "softmax Jacobian, n = 2"."""
    cost = _log_likelihood if cost is None else cost
    target = Hypothesis(r"\sum_{i} y_{i} = 1", "probability target",
                        "A one-hot or probability target $y$ (symgrad refuses any other, and states it in Gradient.assumptions).")
    steps = [_jacobian(n, jacobian_sign) for n in (2, 3)]
    steps += [_output_delta(n, cost, simplex) for n in (2, 3, 4)]
    steps += [_library(n) for n in (2, 3)]

    def cross():
        from symgrad.symbolic.verify import verify_gradient

        net = _build.network([2, 3, 3], ["tanh", "softmax"], "log_likelihood")
        for name in ("b2", "W1"):
            assert verify_gradient(net, name).ok, name
        for seed in range(5):
            p = _numeric.sample(net, 4, seed=seed)
            res = _numeric.backprop(net, p)
            zL = np.asarray(_numeric.forward(net, p)["z2"], dtype=float)
            e = np.exp(zL - zL.max(axis=-1, keepdims=True))
            a = e / e.sum(axis=-1, keepdims=True)
            assert np.allclose(res.grads["b2"], a - p["y"], rtol=1e-12, atol=1e-15)

    return Theorem("17", "Softmax with the log-likelihood cost",
                   r"For $n \in \{2, 3, 4\}$ output units (each checked exactly), $a_i = e^{z_i}/\sum_k e^{z_k}$ and "
                   r"$C = -\sum_i y_i \ln a_i$ ($= -\ln a_y$ for a one-hot $y$) with "
                   r"$\sum_i y_i = 1$: $\frac{\partial C}{\partial z} = \Sigma'(z)^{\mathsf T}\nabla_a C = a - y$, where "
                   r"$\Sigma'(z) = \operatorname{diag}(a) - a a^{\mathsf T}$. The softmax Jacobian cancels, as $\sigma'$ does for "
                   r"cross-entropy (Theorem 11); without $\sum_i y_i = 1$ the error is $a\sum_i y_i - y$.",
                   steps, hypotheses=[target], crosscheck=cross,
                   crosscheck_doc="symgrad's exact verification against sympy.diff on a $2{-}3{-}3$ tanh/softmax network, and its "
                                  "backprop's $\\partial C/\\partial b^L$ against a NumPy softmax$(z^L) - y$ on 5 seeds.",
                   source="Nielsen, Neural Networks and Deep Learning, ch. 3 (softmax)", slug="softmax_log_likelihood")
