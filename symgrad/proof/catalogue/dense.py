"""Theorem 10: the δ recursion of dense layers, entrywise, and the norm bound it implies."""

from __future__ import annotations

import numpy as np
import sympy
from sympy import Rational as Q

from symgrad import numeric as _numeric
from symgrad.spec.activations import sigmoid
from symgrad.symbolic import build as _build
from symgrad.proof.engine import Certificate, Given, Hypothesis, Identity, Implies, Induction, Theorem
from symgrad.proof.catalogue._common import SIG, hyp, n, np_sig, sp

__all__ = ["t_dense", "false_dense"]


# =============================================================================================
# 10. dense layers
# =============================================================================================


def _dense_local(nl, nn):
    C = sympy.Function("C")
    zl = sympy.symbols("z1:%d" % (nl + 1), real=True)
    Wm = sympy.Matrix(nn, nl, lambda r_, c_: sympy.Symbol("W_%d%d" % (r_ + 1, c_ + 1), real=True))
    bv = sympy.symbols("c1:%d" % (nn + 1), real=True)
    u = [sum(Wm[jj, kk] * sigmoid(zl[kk]) for kk in range(nl)) + bv[jj] for jj in range(nn)]
    xs = [sympy.Dummy("xi") for _ in range(nn)]
    delta = sympy.Matrix([sympy.Subs(sympy.Derivative(C(*xs), xs[jj]), xs, u) for jj in range(nn)])
    rhs = sympy.diag(*[sp(t) for t in zl]) * Wm.T * delta
    return [Identity(sympy.Derivative(C(*u), zl[i]), rhs[i], "entry %d, widths %d->%d" % (i + 1, nl, nn)) for i in range(nl)]


def t_dense(sup=Q(1, 4)) -> Theorem:
    d1, d2, d3 = sympy.symbols("d1:4", real=True)
    x1, x2, x3 = sympy.symbols("x1:4", real=True)
    s_ = sympy.Symbol("s", nonnegative=True)
    hs = [hyp("h_%d" % i) for i in (1, 2, 3)]
    N0, N1, B0, c = (sympy.Symbol(nm, nonnegative=True) for nm in ("N_l+1", "N_l", "B_l+1", "c"))
    e1, e2 = hyp("e_1"), hyp("e_2")
    local = _dense_local(2, 3) + _dense_local(3, 2)
    ds = (d1, d2, d3)
    bounded = [Hypothesis(r"s^2 - d_%d^2 \ge 0" % i, "|d_%d| <= s" % i, "$d_%d = \\varphi'(z_%d)$, and $|\\varphi'| \\le s$ by the statement." % (i, i),
                          expr=s_ ** 2 - ds[i - 1] ** 2) for i in (1, 2, 3)]
    opnorm = Given(r"\|Ax\|_2 \le \|A\|_2\,\|x\|_2 \text{ and } \|A^{\mathsf T}\|_2 = \|A\|_2", "operator norm",
                   "The definition and a standard property of the spectral norm.")
    diag = Certificate(s_ ** 2 * (x1 ** 2 + x2 ** 2 + x3 ** 2) - (d1 ** 2 * x1 ** 2 + d2 ** 2 * x2 ** 2 + d3 ** 2 * x3 ** 2),
                       hs[0] * x1 ** 2 + hs[1] * x2 ** 2 + hs[2] * x3 ** 2, "diagonal factor",
                       "$\\|\\Sigma'(z)x\\|^2 \\le s^2\\|x\\|^2$ with $h_i = s^2 - d_i^2 \\ge 0$; shown for width 3, and the witness is termwise for any width.",
                       where={hs[0]: s_ ** 2 - d1 ** 2, hs[1]: s_ ** 2 - d2 ** 2, hs[2]: s_ ** 2 - d3 ** 2}, by=dict(zip(hs, bounded)))
    one_layer = Implies(local + [diag, opnorm], r"N_l = \|\delta^l\| \le c\,N_{l+1}, \quad c = s\,\|W^{l+1}\|_2", "one layer",
                        rule="$\\delta^l = \\Sigma'(z^l)(W^{l+1})^{\\mathsf T}\\delta^{l+1}$ (the local identities): bound $\\Sigma'$ by the diagonal factor "
                             "and $(W^{l+1})^{\\mathsf T}$ by its operator norm (the diagonal bound for width 3 read for any width)",
                        expr=c * N0 - N1)
    output = Implies([diag], r"\|\delta^L\| \le s\,\|\nabla_a C\|", "output layer",
                     rule="$\\delta^L = \\Sigma'(z^L)\\nabla_a C$; the diagonal factor with $x = \\nabla_a C$, then square roots")
    ih = Hypothesis(r"B_{l+1} - N_{l+1} \ge 0", "claim at l+1", expr=B0 - N0)
    steps = local + [
        opnorm, diag, one_layer,
        Induction(n, 0, [output],
                  [Certificate(c * B0 - N1, e1 + c * e2, "one more layer",
                               "$e_1 = cN_{l+1} - N_l \\ge 0$ (one layer), $e_2 = B_{l+1} - N_{l+1} \\ge 0$ (claim at $l+1$); $n = L - l$.",
                               where={e1: c * N0 - N1, e2: B0 - N0}, by={e1: one_layer, e2: ih})],
                  "layers", statement_tex=r"\|\delta^l\| \le B_l := \prod_{k=l+1}^{L}\left(s\,\|W^{k}\|_2\right)s\,\|\nabla_a C\|,\quad n = L - l",
                  induction_hypothesis=[ih]),
    ]

    def cross():
        widths = [3, 5, 4, 2]
        net = _build.network(widths)
        for seed in range(20):
            p = _numeric.sample(net, seed=seed)
            res = _numeric.backprop(net, p)
            a, zs = np.asarray(p["a0"], dtype=float), []
            for l in range(1, 4):
                zl = np.asarray(p["W%d" % l]) @ a + np.asarray(p["b%d" % l])
                zs.append(zl)
                a = np_sig(zl)
            for l in (1, 2):
                want = SIG.grad(zs[l - 1]) * (np.asarray(p["W%d" % (l + 1)]).T @ res.deltas[l])
                assert np.allclose(res.deltas[l - 1], want, rtol=1e-12, atol=0)
            gnorm = np.linalg.norm(a - np.asarray(p["y"]))
            bound = gnorm * 0.25
            for l in (3, 2, 1):
                assert np.linalg.norm(res.deltas[l - 1]) <= bound * (1 + 1e-12)
                if l > 1:
                    bound *= 0.25 * np.linalg.norm(np.asarray(p["W%d" % l]), 2)

    return Theorem("10", "Dense layers",
                   r"$\delta^l = \Sigma'(z^l)\,(W^{l+1})^{\mathsf T}\delta^{l+1}$, and if $|\varphi'| \le s$ everywhere (for sigmoid the least such $s$ is "
                   r"$\sup|\varphi'| = %s$), then $\|\delta^l\| \le \prod_{k=l+1}^{L}\left(s\,\|W^k\|_2\right)s\,\|\nabla_a C\|$. "
                   r"The recursion is checked entrywise for widths $2 \to 3$ and $3 \to 2$." % sympy.latex(sup),
                   steps, hypotheses=bounded, crosscheck=cross, crosscheck_doc="symgrad's backprop on a $3{-}5{-}4{-}2$ sigmoid network, 20 seeds: the recursion holds and every $\\|\\delta^l\\|$ obeys the bound.",
                   source="article 002", slug="dense")


def false_dense() -> Theorem:
    """Claims ‖Σ'(z)x‖ ≤ (s/2)‖x‖: the diagonal certificate must fail."""
    thm = t_dense()
    d1, d2, d3 = sympy.symbols("d1:4", real=True)
    x1, x2, x3 = sympy.symbols("x1:4", real=True)
    s_ = sympy.Symbol("s", nonnegative=True)
    hs = [hyp("h_%d" % i) for i in (1, 2, 3)]
    idx = next(i for i, st in enumerate(thm.steps) if st.label == "diagonal factor")
    thm.steps[idx] = Certificate((s_ / 2) ** 2 * (x1 ** 2 + x2 ** 2 + x3 ** 2) - (d1 ** 2 * x1 ** 2 + d2 ** 2 * x2 ** 2 + d3 ** 2 * x3 ** 2),
                                 hs[0] * x1 ** 2 + hs[1] * x2 ** 2 + hs[2] * x3 ** 2, "diagonal factor",
                                 where={hs[0]: s_ ** 2 - d1 ** 2, hs[1]: s_ ** 2 - d2 ** 2, hs[2]: s_ ** 2 - d3 ** 2})
    return thm
