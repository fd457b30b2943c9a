"""numba support for the generated chain kernels (``pip install 'symgrad[jit]'``): whether numba
imports, and the branch-free elementary functions that the kernels of :mod:`symgrad.numeric._codegen`
inline.

Why branch-free elementary functions.  numba compiles ``math.exp``, ``math.expm1``, ``math.log1p``
and ``math.tanh`` to scalar libm calls: LLVM vectorises them only through Intel SVML, and the pip
llvmlite (0.50, LLVM 22) is not built with the SVML patch (``numba -s``: "SVML Operational: False",
also with the ``intel-cmplr-lib-rt`` package installed), so no vector math library is reachable.
The functions below have no calls and no branches, so LLVM vectorises the loops that use them.
Measured on the project's machine (benchmarks/bench_evaluator.py, ns per element in a numba loop):
exp_neg 1.2 vs math.exp 4.6; expm1_neg 1.1 vs math.expm1 7.4; log1p_unit 0.9 vs math.log1p 8.0;
tanh_ 1.4 vs math.tanh 16.1.  Their coefficients are not fitted here: exp's is the documented
Chebyshev fit (tests recompute it), expm1's the Taylor coefficients 1/n!, log1p's the atanh series
1/(2k+1); tests/test_jit.py holds each to an ulp bound against mpmath that follows from the
algorithm.  Where erf/erfc is needed (GELU) the kernels call ``math.erfc``, which stays scalar.

Nothing here validates or raises: the generated kernels return a status and per-sample flags, and
:func:`symgrad.numeric.backprop` turns a non-finite z into the exact diagnosis and the flagged
samples into a rescaled redo, exactly as for the NumPy kernel.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

__all__ = ["available", "import_error", "elementary", "exp_neg", "numba_module", "typed_rows"]

_IMPORT_ERROR: str | None = None


def available() -> bool:
    """True when numba imports (it is then used for large chains whose activations print)."""
    global _IMPORT_ERROR
    if _EXP_NEG is not None:
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
#: exp on [−ln2/2, ln2/2], highest degree first.
EXP_POLY = (
    2.5110037605963777e-08, 2.763263963904103e-07, 2.755724091857897e-06, 2.4801485482328494e-05,
    0.00019841269890047113, 0.0013888888952314775, 0.008333333333319601, 0.0416666666664881,
    0.1666666666666668, 0.5000000000000019, 1.0, 1.0,
)


def _make_exp_neg(njit, opts):
    c = EXP_POLY
    LOG2E, LN2_HI, LN2_LO, SHIFT, SHIFT_BITS = _LOG2E, _LN2_HI, _LN2_LO, _SHIFT, np.int64(_SHIFT_BITS)

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

    return exp_neg


#: e^r − 1 = r + r²(1/2! + r(1/3! + … + r/13!)): the Taylor coefficients 1/n!, n = 2..13, rounded
#: to doubles (highest degree first).  On |r| ≤ ln(2)/2 the first omitted term is below
#: 1.2e-17·|r| (0.11 ulp), and the leading r is exact, so e^r − 1 keeps its relative precision near 0.
EXPM1_TAYLOR = tuple(float(Fraction(1, math.factorial(n))) for n in range(13, 1, -1))
#: log1p(x) = 2 atanh(s), s = x/(2 + x) = s·2(1 + s²/3 + s⁴/5 + … + s²²/23): coefficients 1/(2k+1),
#: k = 1..11 (highest first).  With |s| ≤ 3 − 2√2 = 0.1716 the first omitted term is below 1e-18.
LOG1P_ATANH = tuple(float(Fraction(1, 2 * k + 1)) for k in range(11, 0, -1))
_SQRT2_M1 = 0.41421356237309503  # below √2 − 1 (rounded down): 1 + x ≤ √2 uses the direct series


def _make_elementary(njit, opts, exp_neg):
    """expm1, log1p on [0, 1] and tanh without calls or branches, so that LLVM vectorises the
    loops that use them (numba's math.expm1/log1p/tanh are scalar libm calls without SVML)."""
    T = EXPM1_TAYLOR
    A = LOG1P_ATANH
    LOG2E, LN2_HI, LN2_LO, SHIFT = _LOG2E, _LN2_HI, _LN2_LO, _SHIFT
    SQRT2_M1 = _SQRT2_M1

    @njit(inline="always", **opts)
    def expm1_neg(u):
        """e^u − 1 for u ≤ 0: u = k ln 2 + r, then (2^k − 1) + 2^k (e^r − 1) (exact for k = 0)."""
        u = max(u, -60.0)  # e^−60 − 1 rounds to −1
        kd = u * LOG2E + SHIFT
        kf = kd - SHIFT
        r = (u - kf * LN2_HI) - kf * LN2_LO
        q = T[0]
        q = q * r + T[1]
        q = q * r + T[2]
        q = q * r + T[3]
        q = q * r + T[4]
        q = q * r + T[5]
        q = q * r + T[6]
        q = q * r + T[7]
        q = q * r + T[8]
        q = q * r + T[9]
        q = q * r + T[10]
        q = q * r + T[11]
        p = r + (r * r) * q
        s = np.int64((np.int64(kf) + 1023) << 52).view(np.float64)  # 2^k, k ≥ −87: normal
        return (s - 1.0) + s * p

    @njit(inline="always", **opts)
    def log1p_unit(x):
        """log(1 + x) for 0 ≤ x ≤ 1: for 1 + x > √2, log 2 + log1p((x − 1)/2) (exact argument)."""
        big = x > SQRT2_M1
        f = (x - 1.0) * 0.5 if big else x
        s = f / (2.0 + f)
        s2 = s * s
        q = A[0]
        q = q * s2 + A[1]
        q = q * s2 + A[2]
        q = q * s2 + A[3]
        q = q * s2 + A[4]
        q = q * s2 + A[5]
        q = q * s2 + A[6]
        q = q * s2 + A[7]
        q = q * s2 + A[8]
        q = q * s2 + A[9]
        q = q * s2 + A[10]
        t = 2.0 * s + (2.0 * s) * (s2 * q)
        return ((t + LN2_LO) + LN2_HI) if big else t

    @njit(inline="always", **opts)
    def tanh_(x):
        """tanh(x) = −m/(2 + m) with m = e^{−2|x|} − 1, signed as x (|x| ≥ 20 gives ±1)."""
        m = expm1_neg(-2.0 * min(abs(x), 20.0))
        return math.copysign(-m / (2.0 + m), x)

    return expm1_neg, log1p_unit, tanh_


_ELEMENTARY = None


def elementary() -> dict:
    """The compiled branch-free elementary functions the generated kernels inline."""
    global _ELEMENTARY
    if _ELEMENTARY is None:
        numba = numba_module()
        opts = dict(nogil=True, fastmath={"contract"}, error_model="numpy")
        e = exp_neg()
        expm1_neg, log1p_unit, tanh_ = _make_elementary(numba.njit, opts, e)
        _ELEMENTARY = {"exp_neg": e, "expm1_neg": expm1_neg, "log1p_unit": log1p_unit, "tanh_": tanh_}
    return _ELEMENTARY


_EXP_NEG = None


def numba_module():
    """numba itself (ImportError with the reason when it does not import)."""
    if not available():
        raise ImportError(_IMPORT_ERROR)
    import numba

    return numba


def exp_neg():
    """The compiled e^u for u ≤ 0 (inlined into the generated kernels of symgrad.numeric._codegen)."""
    global _EXP_NEG
    if _EXP_NEG is None:
        numba = numba_module()
        _EXP_NEG = _make_exp_neg(numba.njit, dict(nogil=True, fastmath={"contract"}, error_model="numpy"))
    return _EXP_NEG


def typed_rows(rows):
    """A numba typed List of 1-D float64 rows (the per-layer w or b arrays)."""
    from numba.typed import List

    return List(rows)
