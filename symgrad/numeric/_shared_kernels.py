"""Compiled elementwise steps of :func:`symgrad.numeric.shared.backprop_shared`, generated from
each activation's one definition (its printed form, :func:`symgrad.numeric._codegen.form_of`).

Per layer of a batch (B rows) with one W^l shared, after the GEMM ``z = a^{l−1} W^lᵀ`` (B × n_l,
C-contiguous, written flat)::

    fwd_plain{k}:  z += b^l,  a^l = φ(z),                 P^l = φ'(z)
    fwd_res{k}:    z += b^l,  a^l = a^{l−1} + α_l φ(z),   P^l = φ'(z)

each writing the column sums of squares Σ_s (z^l_sj)² into ``zsq`` and Σ_s (a^l_sj)² into ``asq``
(q^l and the overflow bound of ∂C/∂W^{l+1}, without reading z^l or a^l again), z^l itself back
only where ``keep_z`` (the output layer's, for the loss), and returning ``(bad, zeros, ss, amax)``:
how many entries have a^l or P^l not finite (a non-finite x is the one whose x − x is not 0), how
many a^l are exactly 0 (fewer than B: no column of a^l is zero for the whole batch, so the next
layer need not look for one), Σ_j zsq_j = Σ(z^l)² and max_j asq_j (so that the caller makes no
NumPy call for them: between two GEMMs, a NumPy call took 40 µs where it takes 5 µs in a loop of
its own, its code and data evicted from the caches)
(φ and φ' from one evaluation of the printed form, which shares their subexpressions), and after
the GEMM ``u = δ^l W^l``::

    bwd_plain:     δ^{l−1} = (P^{l−1} ⊙ u)·c
    bwd_res:       g^{l−1} = u + r g^l (in place in u),  δ^{l−1} = (P^{l−1} ⊙ g^{l−1})·c

each also writing ‖δ^{l−1}_s‖² per sample and, where ``want_gb`` (the pass returns gradients),
Σ_s δ^{l−1}_s (∂C/∂b^{l−1}) in the same pass (without it: 0.28 against 0.43 ns per entry), and
returning Σ_s ‖δ^{l−1}_s‖² (finite iff every ‖δ^{l−1}_s‖² is, as the terms are not negative, unless
the sum alone overflows)
(r = 1 after a residual layer l, 0 after a plain one; c = α_{l−1} for a residual layer l − 1, else
1, multiplied last, so that α·φ' is never formed: it can overflow where δ does not, as the NumPy
path's (φ'·g)·α does not; g^l = ∂C/∂a^l; the residual recursion is derived in
:mod:`symgrad.numeric.residual`'s module docstring).  So φ' is never recomputed, no
temporary is made, and each entry is read and written once per pass instead of once per NumPy
ufunc.  The sums are reassociated (vectorised): any order of an n-term sum is within γ_n of the
exact one (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., §3.1), which is the
bound the tests hold them to.  φ's own arithmetic is compiled without reassociation (its
branch-free exp relies on the order of its operations).

No loop writes an array that another of its arguments views (LLVM then keeps its vector path;
with P written over z it took the scalar path, 0.052 s against 0.039 s per pass, measured for the
residual network of issue #14).

None is returned (and the NumPy path runs) where numba is missing, the dtype is not float64 (the
branch-free elementary functions are float64's), or an activation does not print
(:class:`symgrad.numeric._codegen._Unprintable`).  Nothing is kept between calls except the
compiled functions themselves (at most 64 sets, one per distinct tuple of printed forms).
"""

from __future__ import annotations

import numpy as np

__all__ = ["kernels"]

# (z, a, P: (B, n) C-contiguous; b, zsq, asq: (n,).  Two-dimensional indexing: a flat loop stepping
# by rows, z[i0 + j], was not vectorised by LLVM, 9.8 against 2.9 ns per entry for tanh.  The sums
# of squares are kept per column, so that the inner loop over a row has no reduction to reorder.)
_FWD = """\
def fwd_{kind}{k}(z, b, {extra}a, P, zsq, asq, keep_z):
    B, n = z.shape
    for j in range(n):
        zsq[j] = 0.0
        asq[j] = 0.0
    bad = 0
    zeros = 0
    for i in range(B):
        for j in range(n):
            zi = z[i, j] + b[j]
            if keep_z:
                z[i, j] = zi
            pi, di, ufi = phi{k}(zi)
            ai = {a_new}
            a[i, j] = ai
            P[i, j] = {p_new}
            zsq[j] += zi * zi
            asq[j] += ai * ai
            bad += 0 if (ai - ai == 0.0) & (di - di == 0.0) else 1
            zeros += 1 if ai == 0.0 else 0
    ss = 0.0
    amax = 0.0
    for j in range(n):
        ss += zsq[j]
        amax = max(amax, asq[j])
    return bad, zeros, ss, amax
"""

#: The plain and the residual forward steps, from the one template above.
_FWD_KINDS = {"plain": dict(extra="", a_new="pi", p_new="di"),
              "res": dict(extra="a_prev, c, ", a_new="a_prev[i, j] + c * pi", p_new="di")}

# (flat views of (B, n) blocks, n given)
# One row loop, written out twice per step (with and without the column sums Σ_s δ: numba
# vectorises each only as a loop of its own), and each step's way of forming its g.
_BWD_LOOP = """\
        for i in range(u.size // n):
            s = 0.0
            for j in range(n):
                k = i * n + j
{g}                di = (P[k] * {gi}) * c
                d[k] = di
                s += di * di
{gb}            dsq[i] = s
            tot += s
"""
_BWD_STEP = """\
def bwd_{kind}({args}):
    tot = 0.0
    if want_gb:
        for j in range(n):
            gb[j] = 0.0
{with_gb}    else:
{without_gb}    return tot
"""
_BWD_KINDS = {"plain": dict(args="u, P, c, d, n, dsq, gb, want_gb", g="", gi="u[k]"),
              "res": dict(args="u, g, r, P, c, d, n, dsq, gb, want_gb",
                          g="                gi = u[k] + r * g[k]\n                u[k] = gi\n", gi="gi")}


def _bwd_source() -> str:
    steps = []
    for kind, f in _BWD_KINDS.items():
        loop = lambda gb: _BWD_LOOP.format(g=f["g"], gi=f["gi"], gb=gb)  # noqa: E731
        steps.append(_BWD_STEP.format(kind=kind, args=f["args"], with_gb=loop("                gb[j] += di\n"),
                                      without_gb=loop("")))
    return "\n\n".join(steps)


_BWD = _bwd_source()

_CACHE: dict = {}


class Kernels:
    """The compiled steps for one network: ``plain[l−1]`` / ``res[l−1]`` the forward of layer l
    (signatures as in the module docstring), ``bwd_plain`` and ``bwd_res`` the backward step."""

    __slots__ = ("plain", "res", "bwd_plain", "bwd_res")

    def __init__(self, plain, res, bwd_plain, bwd_res):
        self.plain, self.res, self.bwd_plain, self.bwd_res = plain, res, bwd_plain, bwd_res


def source(forms: tuple[str, ...]) -> str:
    """The generated module text for these distinct printed forms (each ``def phi(z): …`` from
    :func:`symgrad.numeric._codegen.form_of`): ``phi{k}``, ``fwd_plain{k}``, ``fwd_res{k}`` for each
    and the two backward steps.  Made only of the fixed templates above and the printed forms."""
    parts = []
    for k, f in enumerate(forms):
        if not f.startswith("def phi(z):\n"):
            raise ValueError("not a printed form: %r" % (f[:40],))
        parts.append("def phi%d(z):\n" % k + f[len("def phi(z):\n"):])
        for kind, fill in _FWD_KINDS.items():
            parts.append(_FWD.format(kind=kind, k=k, **fill))
    return "\n\n".join(parts) + "\n\n" + _BWD


def kernels(net, dtype) -> Kernels | None:
    """The compiled steps for ``net``'s activations, or None (NumPy path) where numba is missing,
    ``dtype`` is not float64, or an activation does not print.  Compiled on first use of each
    distinct tuple of forms (numba compiles each function at its first call)."""
    from symgrad.numeric import _codegen
    from symgrad.numeric import compiled as _jit

    if np.dtype(dtype) != np.float64 or not _jit.available():
        return None
    try:
        forms = tuple(_codegen.form_of(act) for act in net.activations)
    except _codegen._Unprintable:
        return None
    distinct = tuple(dict.fromkeys(forms))
    if distinct not in _CACHE:
        numba = _jit.numba_module()
        ns = _codegen._run_generated(source(distinct))
        opts = dict(nogil=True, fastmath={"contract"}, error_model="numpy")
        for k in range(len(distinct)):
            ns["phi%d" % k] = numba.njit(inline="always", **opts)(ns["phi%d" % k])
        plain = tuple(numba.njit(**opts)(ns["fwd_plain%d" % k]) for k in range(len(distinct)))
        res = tuple(numba.njit(**opts)(ns["fwd_res%d" % k]) for k in range(len(distinct)))
        # the per-row sum of squares and the column sums may be reassociated: any order is within γ_n
        red = dict(nogil=True, fastmath={"contract", "reassoc"}, error_model="numpy")
        if len(_CACHE) >= 64:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[distinct] = (plain, res, numba.njit(**red)(ns["bwd_plain"]), numba.njit(**red)(ns["bwd_res"]))
    plain, res, bp, br = _CACHE[distinct]
    idx = [distinct.index(f) for f in forms]
    return Kernels([plain[i] for i in idx], [res[i] for i in idx], bp, br)
