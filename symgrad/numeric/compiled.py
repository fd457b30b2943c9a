"""Optional compiled kernel for all-sigmoid chains (``pip install 'symgrad[jit]'``, numba).

Why it exists.  NumPy's float64 ``exp`` is a scalar libm call on CPUs without AVX-512 (about 5 ns
an element on the project's machines), and every other NumPy pass over a block costs 0.3-0.9 ns
per element; the in-place NumPy kernel in :mod:`symgrad.numeric` needs one exp and ~14 passes per
layer-sample, which keeps it at 0.6-0.7x PyTorch (whose sigmoid uses a SIMD exp).  Here numba
compiles each layer into two short loops over cache-resident rows, and ``exp_neg`` below is an
exp that LLVM can vectorise (no calls, no branches), so the whole chain runs near the memory
bandwidth of reading w, b and writing the two gradient arrays (measured: within 2x of copying
the w, b rows into two fresh arrays; see benchmarks/bench_evaluator.py).

The formulas are the NumPy kernel's, with the same exactness:

    z = w a + b;  e = exp(−|z|);  r = 1/(1 + e);  t = e r;
    a' = max(t, copysign(r, z)) = σ(z);  σ'(z) = t r;  c_{j−1} = σ'(z_{j−1}) w_j

(the exp below is within 1 ulp of the exact value, and the compiler may fuse a multiply and an
add into one correctly rounded FMA, so the two kernels' roundings differ).  The tests hold each
kernel, not their difference, to a forward-error bound against an mpmath reference
(tests/_mpref.py), which does not depend on how a CPU rounds.

Nothing here validates or raises: the kernels return a status, and :func:`symgrad.numeric.backprop`
turns a non-finite z into the exact diagnosis, and a block where a unit saturates (|z| > 708, σ or
σ' below the smallest normal double) or a product leaves the normal range (overflow, underflow,
0·inf) into a rescaled redo of that block alone, exactly as for the NumPy kernel.  The checks cost
a compare per element in loops that are bound by memory bandwidth.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["available", "import_error", "kernels", "typed_rows"]

_KERNELS = None
_IMPORT_ERROR: str | None = None


def available() -> bool:
    """True when numba imports (it is then used for large all-sigmoid chains)."""
    global _IMPORT_ERROR
    if _KERNELS is not None:
        return True
    if _IMPORT_ERROR is not None:
        return False
    try:
        import numba  # noqa: F401
    except Exception as exc:  # ImportError, or a numba that refuses this NumPy
        _IMPORT_ERROR = "%s: %s" % (type(exc).__name__, exc)
        return False
    return True


def import_error() -> str | None:
    available()
    return _IMPORT_ERROR


# exp(u) = 2^k · exp(r), k = round(u / ln 2), r = u − k ln 2 (Cody–Waite: ln 2 split in two so that
# k·LN2_HI is exact for |k| < 2^20), |r| ≤ ln(2)/2; exp(r) by a degree-11 polynomial, the Chebyshev
# (near-minimax) fit of exp on [−ln2/2, ln2/2] that mpmath computes with
#     mpmath.mp.dps = 50; mpmath.chebyfit(mpmath.exp, [-log(2)/2, log(2)/2], 12)
# (tests/test_jit.py recomputes it).  With the coefficients rounded to doubles its relative error
# is 1.7e−17 (0.15 ulp); Taylor needs degree 13 for that, and two fewer FMAs make exp 12% faster.
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
# Adding 1.5·2^52 rounds a double of magnitude < 2^51 to an integer held in the low mantissa bits.
_SHIFT = 6755399441055744.0
_SHIFT_BITS = int(np.float64(_SHIFT).view(np.int64))
_TINY = float(np.finfo(np.float64).tiny)
_HUGE = float(np.finfo(np.float64).max)
#: |z| above which σ(z) (z < 0) or σ'(z) is below the smallest normal float64 (e^−708.4).
_SAFE_Z = 708.0
#: exp on [−ln2/2, ln2/2], highest degree first.
EXP_POLY = (
    2.5110037605963777e-08, 2.763263963904103e-07, 2.755724091857897e-06, 2.4801485482328494e-05,
    0.00019841269890047113, 0.0013888888952314775, 0.008333333333319601, 0.0416666666664881,
    0.1666666666666668, 0.5000000000000019, 1.0, 1.0,
)


def _build(cache=True):
    import numba
    from numba import njit

    c = EXP_POLY
    LOG2E, LN2_HI, LN2_LO, SHIFT, SHIFT_BITS = _LOG2E, _LN2_HI, _LN2_LO, _SHIFT, np.int64(_SHIFT_BITS)
    TINY, HUGE, SAFE_Z = _TINY, _HUGE, _SAFE_Z
    # cache=True: later processes load the machine code from numba's cache (~0.1 s, not ~3 s).
    opts = dict(nogil=True, cache=cache, fastmath={"contract"}, error_model="numpy")

    @njit(inline="always", **opts)
    def exp_neg(u):
        """e^u for u ≤ 0 (u < −745.2 gives 0, as libm's exp does), within 1 ulp of it."""
        u = max(u, -746.0)
        kd = u * LOG2E + SHIFT
        kf = kd - SHIFT  # round(u / ln 2), exactly
        r = (u - kf * LN2_HI) - kf * LN2_LO
        p = c[0]
        p = p * r + c[1]
        p = p * r + c[2]
        p = p * r + c[3]
        p = p * r + c[4]
        p = p * r + c[5]
        p = p * r + c[6]
        p = p * r + c[7]
        p = p * r + c[8]
        p = p * r + c[9]
        p = p * r + c[10]
        p = p * r + c[11]
        # 2^k as two normal powers of two, 2^k1 · 2^k2 with k1 = max(k, −1000): p·2^k1 is exact and
        # the second product rounds once, also where e^u is subnormal.
        k = np.float64(kd).view(np.int64) - SHIFT_BITS
        k1 = np.float64(max(kf, -1000.0) + SHIFT).view(np.int64) - SHIFT_BITS
        s1 = np.int64((k1 + 1023) << 52).view(np.float64)
        s2 = np.int64((k - k1 + 1023) << 52).view(np.float64)
        return (p * s1) * s2

    @njit(**opts)
    def exp_neg_array(u, out):
        for i in range(u.size):
            out[i] = exp_neg(u[i])

    @njit(**opts)
    def forward(W, B, a0, s, e, A, oA, D, oD, aL, zL):
        """Layers 1..L for samples s:e.  A[j, oA:oA+m] ← a_j, D[j, oD:oD+m] ← σ'(z_{j+1}) w_{j+2}
        (the last row: σ'(z_L)); aL, zL ← a_L, z_L.  Returns 0; j+1 if z_{j+1} is not finite; −1
        if some |z| > SAFE_Z, where σ(z) or σ'(z) is below the smallest normal float64."""
        L = len(W)
        m = e - s
        a = np.empty(m)
        z = np.empty(m)
        for i in range(m):
            a[i] = a0[i]
        sat = 0
        for j in range(L):
            w = W[j][s:e]
            b = B[j][s:e]
            arow = A[j, oA:oA + m]
            bad = 0
            if j:
                prev = D[j - 1, oD:oD + m]
                for i in range(m):
                    ai = a[i]
                    wi = w[i]
                    arow[i] = ai
                    zi = wi * ai + b[i]
                    z[i] = zi
                    ci = prev[i] * wi  # c_{j−1} = σ'(z_{j−1}) w_j while w_j is at hand
                    prev[i] = ci
                    sat |= abs(ci) < TINY  # underflowed (a subnormal w, say): redo rescaled
                    bad |= (zi - zi) != 0.0  # nan exactly when zi is ±inf or nan
            else:
                for i in range(m):
                    ai = a[i]
                    arow[i] = ai
                    zi = w[i] * ai + b[i]
                    z[i] = zi
                    bad |= (zi - zi) != 0.0
            if bad:
                return j + 1
            drow = D[j, oD:oD + m]
            for i in range(m):
                zi = z[i]
                sat |= abs(zi) > SAFE_Z
                ei = exp_neg(-abs(zi))
                r = 1.0 / (1.0 + ei)
                t = ei * r
                a[i] = max(t, math.copysign(r, zi))
                drow[i] = t * r
        for i in range(m):
            aL[i] = a[i]
            zL[i] = z[i]
        return -1 if sat else 0

    @njit(**opts)
    def backward(D, oD, A, oA, m, dL, cancel):
        """δ_L = dL (cancel) or σ'(z_L)·dL; δ_j = c_j δ_{j+1}; A[j] ← δ_j a_{j−1}.  Returns 1 if a
        product left the normal float64 range (overflowed, met 0·inf, or fell below the smallest
        normal float64, 0 included), for the rescaled redo; else 0."""
        L = D.shape[0]
        d = np.empty(m)
        bad = 0
        drow = D[L - 1, oD:oD + m]
        arow = A[L - 1, oA:oA + m]
        for i in range(m):
            di = dL[i] if cancel else drow[i] * dL[i]
            drow[i] = di
            gi = arow[i] * di
            arow[i] = gi
            d[i] = di
            # not (TINY ≤ |x| ≤ MAX): true for inf, nan, 0 and subnormals
            bad |= ~((abs(di) >= TINY) & (abs(di) <= HUGE)) | ~((abs(gi) >= TINY) & (abs(gi) <= HUGE))
        for j in range(L - 2, -1, -1):
            drow = D[j, oD:oD + m]
            arow = A[j, oA:oA + m]
            for i in range(m):
                di = drow[i] * d[i]
                drow[i] = di
                gi = arow[i] * di
                arow[i] = gi
                d[i] = di
                bad |= ~((abs(di) >= TINY) & (abs(di) <= HUGE)) | ~((abs(gi) >= TINY) & (abs(gi) <= HUGE))
        return bad

    @njit(**opts)
    def chain_block(W, B, a0, y, s, e, A, oA, D, oD, cross_entropy, loss):
        """Forward, loss and backward for samples s:e (a0, y, loss: full (batch,) arrays).
        The loss is ½(a_L − y)², or for cross-entropy its stable logit form softplus(z_L) − y z_L,
        whose δ_L is σ(z_L) − y, formed without cancellation (as ``_numeric_logs.sigmoid_minus_y``).
        Returns 0; j+1 if z_{j+1} is not finite; −1 if the block must be redone rescaled (a
        saturated unit, or a backward product outside the normal float64 range)."""
        m = e - s
        aL = np.empty(m)
        zL = np.empty(m)
        status = forward(W, B, a0[s:e], s, e, A, oA, D, oD, aL, zL)
        if status:
            return status
        dL = np.empty(m)
        for i in range(m):
            yi = y[s + i]
            # σ(z_L) − y from the logit, for both losses: a_L − y cancels where σ saturates
            # (σ(40) − 1 is −4.2e-18, and a_L − y rounds it to 0).
            zi = zL[i]
            ei = math.exp(-abs(zi))
            r = 1.0 / (1.0 + ei)
            t = ei * r
            if zi >= 0.0:
                di = (1.0 - yi) - t if yi >= 0.5 else r - yi
            else:
                di = t - yi
            dL[i] = di
            if cross_entropy:
                loss[s + i] = max(zi, 0.0) - yi * zi + math.log1p(ei)
            else:
                loss[s + i] = 0.5 * di * di
        if backward(D, oD, A, oA, m, dL, cross_entropy):
            return -1
        return 0

    return {"numba": numba, "exp_neg_array": exp_neg_array, "forward": forward, "backward": backward,
            "chain_block": chain_block}


def kernels() -> dict:
    """The compiled kernels (compiled, or loaded from numba's cache, on first use)."""
    global _KERNELS
    if _KERNELS is None:
        if not available():
            raise ImportError(_IMPORT_ERROR)
        try:
            _KERNELS = _build()
        except RuntimeError:  # numba found no writable cache directory: compile per process
            _KERNELS = _build(cache=False)
    return _KERNELS


def typed_rows(rows):
    """A numba typed List of 1-D float64 rows (the per-layer w or b arrays)."""
    from numba.typed import List

    return List(rows)
