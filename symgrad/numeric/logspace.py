"""Private helpers for the numeric evaluator: log-magnitudes and signs of activation values,
of φ' and of the loss gradient, computed from the pre-activation ``z`` so that they stay finite
where the linear value underflows (σ(−800) is 0 in float64, but log σ(−800) = −800).

Every function here is warning-free for finite float64 input and returns −inf exactly where the
value is exactly zero (a dead ReLU, z = 0 for a function through the origin), never nan.
"""

from __future__ import annotations

import math

import numpy as np

from symgrad.spec.activations import _log_abs_where, _np_log_sigmoid, _np_sigmoid

__all__ = ["split_grad", "split_value", "log_abs", "log_abs_value", "sign_value", "grad_sign", "log_sigmoid", "sigmoid_minus_y", "split", "split_diff",
           "smul", "value", "log_of", "rev_cumprod", "TINY"]


def log_abs(t):
    """log|t|, −inf (without a warning) where t == 0."""
    return _log_abs_where(t)


def log_sigmoid(x):
    """log σ(x), finite for every finite x (scipy.special.log_expit: 0.91 ulp, benchmarks/special_accuracy.py)."""
    return _np_log_sigmoid(x)


def log_abs_value(act, z):
    """log|φ(z)|, from z (finite where φ(z) ≠ 0 exactly): the activation's own kernel."""
    return act.log_abs_value(z)


def sign_value(act, z):
    """sign(φ(z)), exact even where φ(z) underflows: the activation's own kernel."""
    return act.value_sign(z)


def grad_sign(act, z, g=None):
    """sign(φ'(z)), exact even where φ'(z) underflows (the activation's kernel knows the sign of
    its underflowed tails: negative only for silu and GELU)."""
    g = act.grad(z) if g is None else g
    return act.grad_sign(z, g).astype(np.result_type(z, np.float32))


# ---------------------------------------------------------------------------------------------
# Scaled products: x = m · 2^e with m in ±[0.5, 1) (or 0) and an integer exponent e.
#
# Multiplying the mantissas and adding the exponents rounds exactly as often as the linear
# product does (frexp and ldexp are exact; ldexp rounds once where the result is subnormal), so a
# product recovered with ldexp is as accurate as the linear one, yet no partial product can
# overflow or underflow.  Recovering from log space instead (sign · exp(log|x|)) loses about
# |log x| ulps: 1e300 came back as 9.999999999999763e299.
# ---------------------------------------------------------------------------------------------

#: The smallest normal float64: below it a value has lost relative precision (or is 0).
TINY = float(np.finfo(np.float64).tiny)
_LN2 = math.log(2.0)
_EMAX = 1 << 20  # exponents are clipped here before ldexp: far outside the float64 range either way


def split(lin, logabs=None, sign=None):
    """(m, e) with lin = m · 2^e exactly.  Where |lin| < TINY (underflowed, or subnormal with
    few digits left) and ``logabs`` (an array, or a callable of a boolean mask returning the
    masked entries' log|x|) is finite, the value is rebuilt from log|x| and ``sign``.

    The exponent is a float64 holding an integer: exact up to 2^53, and still meaningful as a
    log-magnitude beyond (σ'(1e308) = e^−1e308 has e ≈ −1.4e308)."""
    lin = np.asarray(lin, dtype=np.float64)
    m, e = np.frexp(lin)
    e = e.astype(np.float64)
    if logabs is not None:
        low = np.abs(lin) < TINY
        if low.any():
            la = logabs(low) if callable(logabs) else np.broadcast_to(logabs, lin.shape)[low]
            sg = sign(low) if callable(sign) else np.broadcast_to(sign, lin.shape)[low]
            ok = np.isfinite(la)
            if ok.any():
                k = np.floor(la[ok] / _LN2) + 1.0
                # in [−ln 2, 0] up to rounding (clipped: for |log x| > 2^53 only k means anything)
                r = np.clip(la[ok] - k * _LN2, -_LN2, 0.0)
                m2, e2 = np.frexp(sg[ok] * np.exp(r))
                mo, eo = m[low], e[low]
                mo[ok], eo[ok] = m2, e2 + k
                m[low], e[low] = mo, eo
    return m, e


def split_diff(a, y, logabs=None, sign=None):
    """a − y as (m, e), also where the difference exceeds the float64 range (a = 1e300,
    y = −1.8e308): then (a/2 − y/2)·2, the halvings exact.  ``logabs``/``sign`` as for
    :func:`split` (for a − y where a underflowed)."""
    with np.errstate(over="ignore", invalid="ignore"):
        d = np.asarray(a - y, dtype=np.float64)
        big = ~np.isfinite(d)
        if big.any():
            d = np.where(big, 0.5 * a - 0.5 * y, d)
    m, e = split(d, logabs, sign)
    if big.any():
        e = e + big
    return m, e


def smul(x, y):
    """The product of two scaled numbers (broadcasting)."""
    m, k = np.frexp(x[0] * y[0])
    with np.errstate(over="ignore"):  # exponents below −1.8e308 round to −inf: the value is 0
        return m, x[1] + y[1] + k


def value(x, dtype=np.float64):
    """m · 2^e rounded once to ``dtype``: ±inf where it overflows, 0 or subnormal where it underflows."""
    m, e = x
    e = np.clip(e, -_EMAX, _EMAX).astype(np.int32)
    if np.dtype(dtype) == np.float32:
        # Round once: scale into float64 range first (exact), then to float32.
        ee = np.clip(e, -1100, 1100)
        with np.errstate(over="ignore", under="ignore"):
            v64 = np.ldexp(m, ee)
            out = np.zeros(np.shape(v64), dtype=np.float32)
            big = np.abs(v64) > float(np.finfo(np.float32).max)
            out[...] = np.where(big, np.copysign(np.inf, v64), v64).astype(np.float32)
        return out
    with np.errstate(over="ignore", under="ignore"):
        return np.ldexp(m, e)


def log_of(x):
    """log|m · 2^e| (−inf where m = 0), and the sign."""
    m, e = x
    with np.errstate(over="ignore"):  # below −1.8e308: the correctly rounded −inf
        return log_abs(m) + e * _LN2, np.sign(m)


def rev_cumprod(M, E, chunk=512):
    """Scaled reverse cumulative products along axis 0: P_j = Π_{k≥j} M_k 2^{E_k}.  Mantissas are
    multiplied in chunks of ``chunk`` rows (|Π| ≥ 2^-(chunk+1), far from underflow), then
    renormalised, so the work is vectorised however deep the chain."""
    L = M.shape[0]
    PM = np.empty(M.shape, dtype=np.float64)
    PE = np.empty(E.shape, dtype=np.float64)
    cm = np.ones(M.shape[1:], dtype=np.float64)
    ce = np.zeros(M.shape[1:], dtype=np.float64)
    with np.errstate(over="ignore"):
        _rev_cumprod_chunks(M, E, PM, PE, cm, ce, chunk)
    return PM, PE


def _rev_cumprod_chunks(M, E, PM, PE, cm, ce, chunk):
    L = M.shape[0]
    for hi in range(L, 0, -chunk):
        lo = max(0, hi - chunk)
        cp = np.multiply.accumulate(M[lo:hi][::-1], axis=0)
        cp *= cm
        ces = np.cumsum(E[lo:hi][::-1], axis=0) + ce
        m2, e2 = np.frexp(cp)
        ces += e2
        PM[lo:hi] = m2[::-1]
        PE[lo:hi] = ces[::-1]
        cm, ce = PM[lo], PE[lo]


def sigmoid_minus_y(z, y):
    """σ(z) − y from the logit, with its log-magnitude and sign: where y = 1 (z ≥ 0) it is
    −σ(−z) and where y = 0 (z < 0) it is σ(z), exactly representable even where 1 − σ(z) is not;
    log|·| stays finite where those underflow.  For 0 < y < 1 it picks the form without
    cancellation: (1 − y) − σ(−z) for y ≥ ½ (1 − y is then exact), else σ(z) − y."""
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    r = _np_sigmoid(np.abs(z))  # σ(|z|)
    t = _np_sigmoid(-np.abs(z))  # σ(−|z|)
    pos = z >= 0
    d = np.where(pos, np.where(y >= 0.5, (1.0 - y) - t, r - y), t - y)
    la = log_abs(d)
    # The two exact one-term cases, in log space (σ(−|z|) underflows for |z| > 745).
    one = pos & (y == 1.0)
    zero = ~pos & (y == 0.0)
    if one.any() or zero.any():
        lt = log_sigmoid(-np.abs(z))
        la = np.where(one | zero, lt, la)
    sg = np.where(one, -1.0, np.where(zero, 1.0, np.sign(d)))
    return d, la, sg


def split_grad(act, z):
    """φ'(z) as m·2^k, from log|φ'(z)| where it underflows in linear space."""
    return split(act.grad(z), lambda m: act.log_abs_grad(z[m]), lambda m: grad_sign(act, z[m]))



def split_value(act, z, a):
    """a = φ(z) as m·2^k, from log|φ(z)| where it underflows in linear space."""
    return split(a, lambda m: log_abs_value(act, z[m]), lambda m: sign_value(act, z[m]))
