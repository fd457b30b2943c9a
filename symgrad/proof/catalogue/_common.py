"""What the theorems of the catalogue share: the sigmoid and its unevaluated σ', the per-layer
indexed symbols (the same objects ``symgrad.chain(L)`` uses), the Hypothesis settings of the
cross-checks, and a NumPy forward pass of a sigmoid chain.  Private to the catalogue."""

from __future__ import annotations

import numpy as np
import sympy

from symgrad.spec.activations import activation

SIG = activation("sigmoid")
sp = SIG.prime  # σ'(x), unevaluated: prints \sigma'(x)
zp = sympy.Symbol("z", positive=True)
zn = sympy.Symbol("z", negative=True)
alpha = sympy.Symbol("alpha", positive=True)

# Indexed per-layer symbols, the same objects symgrad.chain(L) uses.
Wi, Zi, Ai = (sympy.IndexedBase(s, real=True) for s in ("w", "z", "a"))
y = sympy.Symbol("y", real=True)
k = sympy.Symbol("k", integer=True, positive=True)
j = sympy.Symbol("j", integer=True, positive=True)
L = sympy.Symbol("L", integer=True, positive=True)
M = sympy.Symbol("M", integer=True, positive=True)
n = sympy.Symbol("n", integer=True, nonnegative=True)


class dC_da(sympy.Function):
    r"""∂C/∂a_l for the layer index l, as an opaque symbol (prints ``\frac{\partial C}{\partial a_{l}}``)."""

    nargs = 1

    def _latex(self, printer, exp=None):
        s = r"\frac{\partial C}{\partial a_{%s}}" % printer._print(self.args[0])
        return s if exp is None else r"\left(%s\right)^{%s}" % (s, exp)


def settings():
    """Hypothesis settings of the cross-checks: 40 derandomized examples, no deadline, no database."""
    from hypothesis import HealthCheck, settings

    return settings(max_examples=40, deadline=None, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


def np_sig(x):
    """symgrad's NumPy sigmoid in float64."""
    return SIG.value(np.asarray(x, dtype=np.float64))


def chain_forward(w, b, a0):
    """z_j and a_j of a sigmoid chain (NumPy, for the cross-checks)."""
    zs, a = [], a0
    for wj, bj in zip(w, b):
        zj = wj * a + bj
        zs.append(zj)
        a = float(np_sig(zj))
    return zs, a


def hyp(name, positive=False):
    """A certificate hypothesis symbol: nonnegative, or positive when ``positive``."""
    return sympy.Symbol(name, positive=True) if positive else sympy.Symbol(name, nonnegative=True)
