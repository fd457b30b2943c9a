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
algorithm.  erfc (GELU's Φ(z) = erfc(−z/√2)/2) is fdlibm's s_erf.c, its published rational
approximations evaluated branch-free: 4.9 ns vs math.erfc 12.1 ns per element, at most 2.1 ulp from
mpmath on the test grid (glibc's math.erfc: 2.7).

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


def _make_exp_parts(njit, opts):
    """The two halves of exp that exp_neg and exp_split share: the polynomial on the reduced
    argument r ∈ [−ln2/2, ln2/2], and 2^k as two normal powers of two 2^k1 · 2^k2 with
    k1 = max(k, −1000) (x·2^k1 is exact and the second product rounds once, also where the result
    is subnormal), from kd = u·log2(e) + SHIFT and kf = round(u/ln 2)."""
    c = EXP_POLY
    SHIFT, SHIFT_BITS = _SHIFT, np.int64(_SHIFT_BITS)

    @njit(inline="always", **opts)
    def exp_poly(r):
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
        return p

    @njit(inline="always", **opts)
    def pow2_pair(kd, kf):
        k = np.float64(kd).view(np.int64) - SHIFT_BITS
        k1 = np.float64(max(kf, -1000.0) + SHIFT).view(np.int64) - SHIFT_BITS
        s1 = np.int64((k1 + 1023) << 52).view(np.float64)
        s2 = np.int64((k - k1 + 1023) << 52).view(np.float64)
        return s1, s2

    return exp_poly, pow2_pair


#: The flushing variants (``flush=True``) return 0 below these arguments, where e^u (erfc's
#: m·e^u, m ≥ 1/32) is below the smallest normal double 2^−1022 = e^−708.396; above them the
#: result, and every operation forming it, is normal.
_FLUSH_EXP = -708.39
_FLUSH_SPLIT = -708.39 + math.log(32.0)


def _make_exp_neg(njit, opts, flush=False):
    LOG2E, LN2_HI, LN2_LO, SHIFT = _LOG2E, _LN2_HI, _LN2_LO, _SHIFT
    LOW = _FLUSH_EXP if flush else -746.0
    exp_poly, pow2_pair = _make_exp_parts(njit, opts)

    @njit(inline="always", **opts)
    def exp_neg(u):
        """e^u for u ≤ 0 (u < −745.2 gives 0, as libm's exp does), within 1 ulp of it; flushing:
        0 where e^u < 2^−1022 (u < _FLUSH_EXP), with no subnormal operand or result on the way."""
        v = max(u, LOW)
        kd = v * LOG2E + SHIFT
        kf = kd - SHIFT  # round(v / ln 2), exactly
        r = (v - kf * LN2_HI) - kf * LN2_LO
        p = exp_poly(r)
        s1, s2 = pow2_pair(kd, kf)  # 2^k; exact scaling, one rounding, also where e^u is subnormal
        e = (p * s1) * s2
        return (0.0 if u < LOW else e) if flush else e

    return exp_neg


#: e^r − 1 = r + r²(1/2! + r(1/3! + … + r/13!)): the Taylor coefficients 1/n!, n = 2..13, rounded
#: to doubles (highest degree first).  On |r| ≤ ln(2)/2 the first omitted term is below
#: 1.2e-17·|r| (0.11 ulp), and the leading r is exact, so e^r − 1 keeps its relative precision near 0.
EXPM1_TAYLOR = tuple(float(Fraction(1, math.factorial(n))) for n in range(13, 1, -1))
#: log1p(x) = 2 atanh(s), s = x/(2 + x) = s·2(1 + s²/3 + s⁴/5 + … + s²²/23): coefficients 1/(2k+1),
#: k = 1..11 (highest first).  With |s| ≤ 3 − 2√2 = 0.1716 the first omitted term is below 1e-18.
LOG1P_ATANH = tuple(float(Fraction(1, 2 * k + 1)) for k in range(11, 0, -1))
_SQRT2_M1 = 0.41421356237309503  # below √2 − 1 (rounded down): 1 + x ≤ √2 uses the direct series


# erfc: Sun's fdlibm s_erf.c (1993; as in FreeBSD msun and musl src/math/erf.c), its four rational
# approximations with their published coefficients, copied exactly.  Stated errors (s_erf.c):
#   |x| < 0.84375:         erfc = 1 − (x + x·R(x²)),  R = pp/qq,       |R − (erf(x) − x)/x| ≤ 2^−57.90
#   0.84375 ≤ |x| < 1.25:  erfc = (1 − erx) ∓ P/Q(|x| − 1),             |P/Q − (erf(|x|) − erx)| ≤ 2^−59.06
#   1.25 ≤ |x| < 1/0.35:   erfc = exp(−z² − 0.5625)·exp((z − x)(z + x) + R1/S1(1/x²))/x, |R1/S1 − f| ≤ 2^−62.57
#   1/0.35 ≤ |x| < 28:     the same with R2/S2,                           |R2/S2 − f| ≤ 2^−61.52
# (z = x with its low 32 bits cleared, so z² is exact; f = log(x·erfc(x)) + x² + 0.5625), and
# erfc(−x) = 2 − erfc(x); erfc(x ≥ 28) = 0, erfc(x ≤ −28) = 2 (rounded).  Branch-free here: every
# piece is computed and the results selected, with one quotient (the selected numerator over the
# selected denominator) and the two exponentials merged into one exp of hi + lo whose Cody–Waite
# reduction keeps lo out of the rounding of hi (see erfc_).
_ERX = 8.45062911510467529297e-01
ERFC_PP = (1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
           -5.77027029648944159157e-03, -2.37630166566501626084e-05)
ERFC_QQ = (1.0, 3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
           1.32494738004321644526e-04, -3.96022827877536812320e-06)
ERFC_PA = (-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
           3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
           -2.16637559486879084300e-03)
ERFC_QA = (1.0, 1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
           1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02)
ERFC_RA = (-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01,
           -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02,
           -8.12874355063065934246e+01, -9.81432934416914548592e+00)
ERFC_SA = (1.0, 1.96512716674392571292e+01, 1.37657754143519042600e+02, 4.34565877475229228821e+02,
           6.45387271733267880336e+02, 4.29008140027567833386e+02, 1.08635005541779435134e+02,
           6.57024977031928170135e+00, -6.04244152148580987438e-02)
ERFC_RB = (-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01,
           -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03,
           -4.83519191608651397019e+02)
ERFC_SB = (1.0, 3.03380607434824582924e+01, 3.25792512996573918826e+02, 1.53672958608443695994e+03,
           3.19985821950859553908e+03, 2.55305040643316442583e+03, 4.74528541206955367215e+02,
           -2.24409524465858183362e+01)
#: the interval boundaries of s_erf.c: 0.84375, 1.25, 1/0.35 (its high word 0x4006DB6D), 28.
ERFC_BREAKS = (0.84375, 1.25, float(np.int64(0x4006DB6D << 32).view(np.float64)), 28.0)


def _make_elementary(njit, opts, exp_neg, flush=False):
    """expm1, log1p on [0, 1] and tanh without calls or branches, so that LLVM vectorises the
    loops that use them (numba's math.expm1/log1p/tanh are scalar libm calls without SVML)."""
    T = EXPM1_TAYLOR
    A = LOG1P_ATANH
    LOG2E, LN2_HI, LN2_LO, SHIFT = _LOG2E, _LN2_HI, _LN2_LO, _SHIFT
    SQRT2_M1 = _SQRT2_M1

    @njit(inline="always", **opts)
    def expm1_reduced(r):
        """e^r − 1 on |r| ≤ ln(2)/2: r + r²(1/2! + r(1/3! + … + r/13!)) (EXPM1_TAYLOR)."""
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
        return r + (r * r) * q

    @njit(inline="always", **opts)
    def expm1_neg(u):
        """e^u − 1 for u ≤ 0: u = k ln 2 + r, then (2^k − 1) + 2^k (e^r − 1) (exact for k = 0)."""
        u = max(u, -60.0)  # e^−60 − 1 rounds to −1
        kd = u * LOG2E + SHIFT
        kf = kd - SHIFT
        r = (u - kf * LN2_HI) - kf * LN2_LO
        p = expm1_reduced(r)
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

    exp_poly, pow2_pair = _make_exp_parts(njit, opts)
    LOW = _FLUSH_EXP if flush else -746.0

    @njit(inline="always", **opts)
    def expm1_exp_neg(u):
        """(e^u − 1, e^u) for u ≤ 0 from one reduction and one polynomial: u = k ln 2 + r, p = e^r − 1
        by expm1_neg's Taylor series, then (2^k − 1) + 2^k p and (1 + p)·2^k (the latter scaled as
        exp_neg scales, exactly or with one rounding where e^u is subnormal; flushing: 0 where
        e^u < 2^−1022).  For the tanh of the compiled kernels, whose stable derivative
        4e^{−2|x|}/(1 + e^{−2|x|})² needs e^u itself: one polynomial for both."""
        v = max(u, LOW)
        kd = v * LOG2E + SHIFT
        kf = kd - SHIFT
        r = (v - kf * LN2_HI) - kf * LN2_LO
        p = expm1_reduced(r)
        s = np.int64((np.int64(max(kf, -100.0)) + 1023) << 52).view(np.float64)  # 2^k, or 2^−100 (e^u − 1 = −1 then)
        s1, s2 = pow2_pair(kd, kf)
        e = ((1.0 + p) * s1) * s2
        return (s - 1.0) + s * p, ((0.0 if u < LOW else e) if flush else e)

    @njit(inline="always", **opts)
    def tanh_(x):
        """tanh(x) = −m/(2 + m) with m = e^{−2|x|} − 1, signed as x (|x| ≥ 20 gives ±1)."""
        m = expm1_neg(-2.0 * min(abs(x), 20.0))
        return math.copysign(-m / (2.0 + m), x)

    LOW_SPLIT = _FLUSH_SPLIT if flush else -746.0

    @njit(inline="always", **opts)
    def exp_split(hi, lo, m):
        """m · e^{hi + lo} for hi + lo ≤ 0, hi ≫ |lo|, 1/32 ≤ m ≤ 1: exp_neg's reduction with
        r = ((hi − k·LN2_HI) + lo) − k·LN2_LO, so lo is not lost in the rounding of hi + lo
        (fdlibm's exp(hi)·exp(lo) in one exp); m·p is scaled by 2^k with one rounding at the end,
        also where the result is subnormal.  hi + lo < −746 gives 0."""
        u = hi + lo
        v = max(u, LOW_SPLIT)
        kd = v * LOG2E + SHIFT
        kf = kd - SHIFT
        inside = u >= LOW_SPLIT  # else v's own reduction: e^v·m is normal and is not used
        r = (((hi if inside else v) - kf * LN2_HI) + (lo if inside else 0.0)) - kf * LN2_LO
        p = exp_poly(r)
        s1, s2 = pow2_pair(kd, kf)
        return ((p * m) * s1) * s2 if inside else 0.0

    PP, QQ, PA, QA = ERFC_PP, ERFC_QQ, ERFC_PA, ERFC_QA
    RA, SA, RB, SB = ERFC_RA, ERFC_SA, ERFC_RB, ERFC_SB
    B1, B2, B3, B4 = ERFC_BREAKS
    ERX, ONE_M_ERX = _ERX, 1.0 - _ERX  # 1 − erx is exact (erx has 24 bits)
    HIGH = np.int64(-1) << 32

    @njit(inline="always", **opts)
    def erfc_(x):
        """erfc(x) by fdlibm's s_erf.c (see ERFC_PP), every piece computed and the result selected."""
        a = abs(x)
        # |x| < 0.84375: x + x·R(x²), R = P/Q (even polynomials)
        t = x * x
        n1 = PP[0] + t * (PP[1] + t * (PP[2] + t * (PP[3] + t * PP[4])))
        d1 = QQ[0] + t * (QQ[1] + t * (QQ[2] + t * (QQ[3] + t * (QQ[4] + t * QQ[5]))))
        # 0.84375 ≤ |x| < 1.25: P/Q(|x| − 1)
        s = a - 1.0
        n2 = PA[0] + s * (PA[1] + s * (PA[2] + s * (PA[3] + s * (PA[4] + s * (PA[5] + s * PA[6])))))
        d2 = QA[0] + s * (QA[1] + s * (QA[2] + s * (QA[3] + s * (QA[4] + s * (QA[5] + s * QA[6])))))
        # 1.25 ≤ |x| < 28: R/S(1/x²), a clamped into [1.25, 28] (outside, the value is not used)
        ac = min(max(a, B2), B4)
        ia = 1.0 / ac
        w = ia * ia
        n3 = RA[0] + w * (RA[1] + w * (RA[2] + w * (RA[3] + w * (RA[4] + w * (RA[5] + w * (RA[6] + w * RA[7]))))))
        d3 = SA[0] + w * (SA[1] + w * (SA[2] + w * (SA[3] + w * (SA[4] + w * (SA[5] + w * (SA[6] + w * (SA[7] + w * SA[8])))))))
        n4 = RB[0] + w * (RB[1] + w * (RB[2] + w * (RB[3] + w * (RB[4] + w * (RB[5] + w * RB[6])))))
        d4 = SB[0] + w * (SB[1] + w * (SB[2] + w * (SB[3] + w * (SB[4] + w * (SB[5] + w * (SB[6] + w * SB[7]))))))
        r1 = a < B1
        r2 = a < B2
        r3 = ac < B3
        num = n1 if r1 else (n2 if r2 else (n3 if r3 else n4))
        den = d1 if r1 else (d2 if r2 else (d3 if r3 else d4))
        y = num / den
        e1 = (1.0 - (x + x * y)) if x < 0.25 else (0.5 - ((x - 0.5) + x * y))
        e2 = (ONE_M_ERX - y) if x > 0.0 else (1.0 + (ERX + y))
        zz = np.int64(np.float64(ac).view(np.int64) & HIGH).view(np.float64)
        e = exp_split(-zz * zz - 0.5625, (zz - ac) * (zz + ac) + y, ia)
        e3 = e if x > 0.0 else 2.0 - e
        e4 = 0.0 if x > 0.0 else 2.0
        return e1 if r1 else (e2 if r2 else (e3 if a < B4 else e4))

    return expm1_neg, log1p_unit, tanh_, exp_split, erfc_, expm1_exp_neg


_ELEMENTARY = None


def elementary(flush: bool = False) -> dict:
    """The compiled branch-free elementary functions the generated kernels inline.  ``flush``:
    exp_neg and erfc_ (through exp_split) return 0 where their value is below the smallest normal
    double, instead of the subnormal value, and never form a subnormal number on the way: on
    Intel CPUs each operation with a subnormal operand or result takes a microcode assist of about
    a hundred cycles, which made a deep residual GELU chain (z of ±10^4, so every entry's e^{−z²/2}
    underflows) 1.8 times slower.  The chain kernels use these: a value below 2^−1022 with ``uf``
    set is never a result there (the entry is marked or the sample redone; _codegen's module
    docstring), and a flushed 0 still sets ``uf``."""
    global _ELEMENTARY
    if _ELEMENTARY is None:
        numba = numba_module()
        opts = dict(nogil=True, fastmath={"contract"}, error_model="numpy")
        _ELEMENTARY = {}
        for fl in (False, True):
            e = exp_neg() if not fl else _make_exp_neg(numba.njit, opts, flush=True)
            expm1_neg, log1p_unit, tanh_, exp_split, erfc_, pair = _make_elementary(numba.njit, opts, e, flush=fl)
            _ELEMENTARY[fl] = {"exp_neg": e, "expm1_neg": expm1_neg, "log1p_unit": log1p_unit, "tanh_": tanh_,
                               "exp_split": exp_split, "erfc_": erfc_, "expm1_exp_neg": pair}
    return _ELEMENTARY[bool(flush)]


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
