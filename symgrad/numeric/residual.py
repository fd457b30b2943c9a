"""Backpropagation through residual layers ``a_l = a_{l−1} + α_l φ_l(z_l)``, for chains and dense networks,
in linear space (with a rescaled redo where a product leaves the normal range) and in log space.

A residual layer l has the transfer ``∂a_l/∂a_{l−1} = 1 + α_l w_l φ'(z_l)`` (dense:
``I + α_l W_lᵀ Σ'(z^l)``) and ``∂a_l/∂z_l = α_l φ'(z_l)``; a plain layer has ``w_l φ'(z_l)`` and
``φ'(z_l)``.  With ``g_l = ∂C/∂a_l`` and ``c_l`` = α_l (residual) or 1 (plain), ``r_l`` = 1
(residual) or 0 (plain), every layer obeys

    δ_l = ∂C/∂z_l = c_l φ'(z_l) ⊙ g_l,        g_{l−1} = W_lᵀ δ_l + r_l g_l,        ∂C/∂W_l = δ_l a_{l−1}ᵀ,

the chain rule through ``a_l = r_l a_{l−1} + c_l φ(W_l a_{l−1} + b_l)`` (Nielsen, *Neural Networks
and Deep Learning*, ch. 2, BP1–BP4, with the skip connection of He et al., "Deep Residual Learning",
2016).  For a chain the transfers are scalars, so ``g_j = ∂C/∂a_L · Π_{k>j} t_k`` with
``t_k = r_k + c_k w_k φ'(z_k)``: one reverse cumulative product, as for plain chains.

In log space the factor ``t = 1 + x`` (x = α w φ'(z)) may be negative or zero: ``log|t|`` is
``log1p(x)`` for x > −½ (full relative precision where |x| is small), ``log|1 + x|`` otherwise
(1 + x is then exact or |t| ≥ ½), and ``log|x|`` where |x| > e^700; its sign is carried apart, so
a depth-100000 residual chain's log-gradients are finite sums.
"""

from __future__ import annotations

import numpy as np

from symgrad.numeric import logspace as _nl
from symgrad.numeric.chain import _RescaleSamples, _chain_forward, _fill_grads, _groups, _scaled_samples, _w_rows
from symgrad.numeric.dense import _dense_forward, _dense_loss, _dense_result, _linear_output_delta, _low_with_log, _rescaled_vecmat, _vecmat, _DENSE_SAFE
from symgrad.numeric.inputs import _Inputs, _Rescale, _tiny_of
from symgrad.numeric.logspace import grad_sign, log_abs, log_abs_value, sign_value
from symgrad.numeric.output import _log_output, _output_delta, _residual_output, _split_output

__all__ = []

#: Above this |x| (e^700), 1 + x is x to within e^−700 relative: log|1 + x| = log|x|.
_BIG_LOG = 700.0
#: As a binary exponent: 1 + x is taken as x where x = m·2^k with k above this.
_BIG_EXP = 1000.0


def _coefficients(inp: _Inputs, dtype=None):
    """(c, r, plain) per layer as (L, 1) arrays: c_l = α_l or 1, r_l = 1 or 0, plain_l (bool, (L,))."""
    dt = inp.dtype if dtype is None else dtype
    al = inp.alphas
    c = np.array([1.0 if a is None else float(a) for a in al], dtype=dt)[:, None]
    plain = np.array([a is None for a in al])
    r = np.where(plain, 0.0, 1.0).astype(dt)[:, None]
    return c, r, plain


# ---------------------------------------------------------------------------------------------
# Helpers on scaled numbers m·2^e (see symgrad.numeric.logspace)
# ---------------------------------------------------------------------------------------------


def _split_one_plus(x):
    """1 + x as m·2^k for x = m·2^k: x itself where |x| ≥ 2^1000 (1 + x rounds to x), else
    1 + x formed linearly from x's correctly rounded value (one rounding).  x = 0 is 0 whatever its
    exponent (a product with φ'(z) = 0 keeps the other factors' exponents): 1 + 0 = 1."""
    m, e = x
    big = (e > _BIG_EXP) & (m != 0)
    with np.errstate(over="ignore", under="ignore"):
        v = _nl.value((np.where(big, 0.0, m), np.where(big, 0.0, e)))
    tm, te = _nl.split(1.0 + v)
    return np.where(big, m, tm), np.where(big, e, te)


def _sadd(x, y):
    """x + y for scaled numbers (entrywise): both brought to the larger exponent (the smaller one's
    bits below 2^−1100 of the larger are dropped: far below its rounding), added, renormalised."""
    (m1, e1), (m2, e2) = x, y
    e = np.maximum(np.where(m1 != 0, e1, -np.inf), np.where(m2 != 0, e2, -np.inf))
    e = np.where(np.isfinite(e), e, 0.0)
    sh1 = np.clip(e1 - e, -1100, 0).astype(np.int32)
    sh2 = np.clip(e2 - e, -1100, 0).astype(np.int32)
    with np.errstate(under="ignore"):
        s = np.ldexp(m1, sh1) + np.ldexp(m2, sh2)
    sm, se = np.frexp(s)
    return sm, se + e


def _log_one_plus(lx, sx, xlin, ok):
    """(log|1 + x|, sign(1 + x)) from x's log-magnitude ``lx`` and sign ``sx``; ``xlin`` is x in
    linear space, trusted where ``ok`` (finite, its factors not underflowed).  log1p(x) for
    x > −½, log|1 + x| below (exact there or |1 + x| ≥ ½), log|x| for |x| > e^700."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        xv = np.where(ok, xlin, sx * np.exp(np.minimum(lx, _BIG_LOG)))
    xv = np.where(np.isfinite(xv), xv, 0.0)
    big = lx > _BIG_LOG
    out = np.empty(np.shape(xv))
    mid = xv > -0.5
    out[mid] = np.log1p(xv[mid])
    out[~mid] = log_abs(1.0 + xv[~mid])
    sg = np.sign(1.0 + xv)
    return np.where(big, lx, out), np.where(big, sx, sg)


# ---------------------------------------------------------------------------------------------
# Chains
# ---------------------------------------------------------------------------------------------


def _chain_lost(net, plain, Z, G, A, aL, zL) -> bool:
    """True where a φ'(z_j), or the output a_j of a plain layer, is below the smallest normal
    number though its exact value is not 0: the linear products may then lose the gradient.
    (A residual layer's a_j = a_{j−1} + α φ(z_j) is a sum: below the normal range it is exact.)"""
    L = net.depth
    tiny = _tiny_of(G)
    for act, idx in _groups(net).items():
        rows = np.asarray(idx)
        low = np.abs(G[rows]) < tiny
        if low.any() and np.isfinite(act.log_abs_grad(Z[rows][low])).any():
            return True
        nxt = rows[(rows + 1 < L) & plain[rows]]
        if nxt.size:
            low = np.abs(A[nxt + 1]) < tiny
            if low.any() and np.isfinite(log_abs_value(act, Z[nxt][low])).any():
                return True
    if plain[L - 1]:
        low = np.abs(aL) < tiny
        return bool(low.any() and np.isfinite(log_abs_value(net.activations[-1], np.asarray(zL)[low])).any())
    return False


def chain_block(inp: _Inputs, s, e, D, A):
    """A residual chain's samples s:e in linear space: D becomes δ_j = ∂C/∂b_j, A becomes ∂C/∂w_j
    (both (L, e − s)); returns the loss.  Raises :class:`_Rescale` (or FloatingPointError) where a
    product over- or underflows or a factor underflowed, for :func:`chain_scaled`."""
    net, L = inp.net, inp.net.depth
    n = e - s
    Z = np.empty((L, n), dtype=inp.dtype)
    aL, zL = _chain_forward(inp, s, e, Z=Z, A=A)  # A[j] = a_j, the input of layer j + 1
    G = np.empty((L, n), dtype=inp.dtype)
    _fill_grads(net, Z, G)
    c, r, plain = _coefficients(inp)
    if _chain_lost(net, plain, Z, G, A, aL, zL):
        raise _Rescale()
    y = inp.block("y", s, e)
    d, loss, cancel = _output_delta(net, aL, zL, y)
    with np.errstate(over="raise", invalid="raise", under="raise"):
        lead = G * c  # ∂a_j/∂z_j = c_j φ'(z_j)
        W = _w_rows(inp, s, e) if L > 1 else None  # w_2..w_L
        if _residual_output(net):
            # g_L = ∂C/∂a_L = a_L − y; δ_L = α_L φ'(z_L) g_L; g_{L−1} = (1 + α_L w_L φ'(z_L)) g_L
            if np.any((np.abs(d) < _tiny_of(d)) & (d != 0)):
                raise _Rescale()
            D[L - 1] = lead[L - 1] * d
            top = (1.0 + lead[L - 1] * W[L - 2]) * d if L > 1 else None
        else:
            if cancel and np.any(np.abs(d) < _tiny_of(d)):
                raise _Rescale()
            D[L - 1] = d if cancel else lead[L - 1] * d
            top = W[L - 2] * D[L - 1] if L > 1 else None
        if L > 1:
            R = np.empty((L - 1, n), dtype=inp.dtype)
            R[L - 2] = top  # g_{L−1}
            if L > 2:
                R[: L - 2] = lead[1: L - 1] * W[: L - 2] + r[1: L - 1]  # t_k, k = 2..L−1
            rev = R[::-1]
            np.multiply.accumulate(rev, axis=0, out=rev)  # R[i] = g_{i+1}
            D[: L - 1] = lead[: L - 1] * R
        A *= D
    return loss


def chain_scaled(inp: _Inputs, s, e, D, A):
    """:func:`chain_block` with every product carried as m·2^k (``logspace.split``): no partial
    product overflows or underflows, factors that underflow in linear space come from their logs,
    1 + x from x's rounded value (or x where |x| ≥ 2^1000), each result rounded once."""
    net, L = inp.net, inp.net.depth
    n = e - s
    Z = np.empty((L, n), dtype=np.float64)
    Ap = np.empty((L, n), dtype=np.float64)
    aL, zL = _chain_forward(inp, s, e, Z=Z, A=Ap)
    c, r, plain = _coefficients(inp, np.float64)
    y = np.broadcast_to(np.asarray(inp.block("y", s, e), dtype=np.float64), (n,))
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        G = np.empty((L, n))
        _fill_grads(net, Z, G)
        GM, GE = np.empty((L, n)), np.empty((L, n))
        AM, AE = np.empty((L, n)), np.empty((L, n))
        AM[0], AE[0] = _nl.split(Ap[0])
        for act, idx in _groups(net).items():
            rows = np.asarray(idx)
            Zr = Z[rows]
            GM[rows], GE[rows] = _nl.split(G[rows], lambda m, Zr=Zr, act=act: act.log_abs_grad(Zr[m]),
                                           lambda m, Zr=Zr, act=act: grad_sign(act, Zr[m]))
            nxt = rows[rows + 1 < L]
            pl = nxt[plain[nxt]]
            if pl.size:  # a plain layer's output φ(z): from its log where it underflowed
                Zn = Z[pl]
                AM[pl + 1], AE[pl + 1] = _nl.split(Ap[pl + 1], lambda m, Zn=Zn, act=act: log_abs_value(act, Zn[m]),
                                                   lambda m, Zn=Zn, act=act: sign_value(act, Zn[m]))
            rs = nxt[~plain[nxt]]
            if rs.size:
                AM[rs + 1], AE[rs + 1] = _nl.split(Ap[rs + 1])
        lead = _nl.smul((GM, GE), _nl.split(c))
        zl, al = np.asarray(zL, dtype=np.float64), np.asarray(aL, dtype=np.float64)
        Wsp = _nl.split(np.broadcast_to(np.asarray(_w_rows(inp, s, e), dtype=np.float64), (L - 1, n))) if L > 1 else None
        DM, DE = np.empty((L, n)), np.empty((L, n))
        if _residual_output(net):
            g = _nl.split_diff(al, y)
            DM[L - 1], DE[L - 1] = _nl.smul((lead[0][L - 1], lead[1][L - 1]), g)
            if L > 1:
                t = _split_one_plus(_nl.smul((lead[0][L - 1], lead[1][L - 1]), (Wsp[0][L - 2], Wsp[1][L - 2])))
                top = _nl.smul(t, g)
        else:
            DM[L - 1], DE[L - 1] = _split_output(net, al, zl, y, grad=(GM[L - 1], GE[L - 1]))
            if L > 1:
                top = _nl.smul((Wsp[0][L - 2], Wsp[1][L - 2]), (DM[L - 1], DE[L - 1]))
        if L > 1:
            RM, RE = np.empty((L - 1, n)), np.empty((L - 1, n))
            RM[L - 2], RE[L - 2] = top
            if L > 2:
                x = _nl.smul((lead[0][1: L - 1], lead[1][1: L - 1]), (Wsp[0][: L - 2], Wsp[1][: L - 2]))
                t = _split_one_plus(x)
                res = ~plain[1: L - 1, None]
                RM[: L - 2] = np.where(res, t[0], x[0])
                RE[: L - 2] = np.where(res, t[1], x[1])
            PM, PE = _nl.rev_cumprod(RM, RE)
            DM[: L - 1], DE[: L - 1] = _nl.smul((lead[0][: L - 1], lead[1][: L - 1]), (PM, PE))
        D[...] = _nl.value((DM, DE), D.dtype)
        A[...] = _nl.value(_nl.smul((DM, DE), (AM, AE)), A.dtype)
        loss = _output_delta(net, aL, zL, np.broadcast_to(inp.block("y", s, e), (n,)))[1]
    return loss


def _log_diff(a, y):
    """(log|a − y|, sign), also where a − y overflows (halved exactly, then log 2 added)."""
    with np.errstate(over="ignore", invalid="ignore"):
        d = a - y
        fin = np.isfinite(d)
        ld = np.where(fin, log_abs(np.where(fin, d, 1.0)), log_abs(0.5 * a - 0.5 * y) + np.log(2.0))
        sg = np.where(fin, np.sign(np.where(fin, d, 0.0)), np.sign(0.5 * a - 0.5 * y))
    return ld, sg


def chain_log(inp: _Inputs, s, e):
    """Log space for a residual chain's samples s:e: (log|∂C/∂b|, sign, log|∂C/∂w|, sign), each
    (L, e − s), as sums of log|c_j φ'(z_j)|, log|t_k| and log|∂C/∂a_L| (never products)."""
    net, L = inp.net, inp.net.depth
    n = e - s
    Z = np.empty((L, n), dtype=np.float64)
    Ap = np.empty((L, n), dtype=np.float64)
    aL, zL = _chain_forward(inp, s, e, Z=Z, A=Ap)
    c, r, plain = _coefficients(inp, np.float64)
    LG, SG = np.empty((L, n)), np.empty((L, n))
    LA, SA = np.empty((L, n)), np.empty((L, n))  # log|a_{j−1}|, its sign
    G = np.empty((L, n))
    with np.errstate(under="ignore"):
        _fill_grads(net, Z, G)
    LA[0], SA[0] = log_abs(Ap[0]), np.sign(Ap[0])
    for act, idx in _groups(net).items():
        rows = np.asarray(idx)
        zi = Z[rows]
        LG[rows] = act.log_abs_grad(zi)
        SG[rows] = grad_sign(act, zi, G[rows])
        nxt = rows[rows + 1 < L]
        pl = nxt[plain[nxt]]
        if pl.size:
            LA[pl + 1], SA[pl + 1] = log_abs_value(act, Z[pl]), sign_value(act, Z[pl])
        rs = nxt[~plain[nxt]]
        if rs.size:
            LA[rs + 1], SA[rs + 1] = log_abs(Ap[rs + 1]), np.sign(Ap[rs + 1])
    with np.errstate(over="ignore"):
        Ll = LG + log_abs(c)  # log|c_j φ'(z_j)|
    Sl = SG * np.sign(c)
    y = np.broadcast_to(np.asarray(inp.block("y", s, e), dtype=np.float64), (n,))
    LB, SB = np.empty((L, n)), np.empty((L, n))
    if L > 1:
        Wr = np.broadcast_to(np.asarray(_w_rows(inp, s, e), dtype=np.float64), (L - 1, n))
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            Lx = Ll[1:] + log_abs(Wr)  # x_k = c_k w_k φ'(z_k), k = 2..L
            Sx = Sl[1:] * np.sign(Wr)
            xlin = (c[1:] * Wr) * G[1:]
            ok = np.isfinite(xlin) & (np.abs(G[1:]) >= _nl.TINY)
        Lt, St = Lx.copy(), Sx.copy()
        res = ~plain[1:]
        if res.any():
            Lt[res], St[res] = _log_one_plus(Lx[res], Sx[res], xlin[res], ok[res])
    al, zl = np.asarray(aL, dtype=np.float64), np.asarray(zL, dtype=np.float64)
    if _residual_output(net):
        Lg, Sg = _log_diff(al, y)  # log|∂C/∂a_L|
        with np.errstate(over="ignore"):
            LB[L - 1], SB[L - 1] = Ll[L - 1] + Lg, Sl[L - 1] * Sg
            if L > 1:
                top = (Lt[L - 2] + Lg, St[L - 2] * Sg)
    else:
        LB[L - 1], SB[L - 1] = _log_output(net, al, zl, y, LG[L - 1], SG[L - 1])
        if L > 1:
            with np.errstate(over="ignore"):
                top = (log_abs(Wr[L - 2]) + LB[L - 1], np.sign(Wr[L - 2]) * SB[L - 1])
    # log|·| ≤ 710 for finite values, so sums only overflow downward, to the correctly rounded −inf.
    with np.errstate(over="ignore", invalid="ignore"):
        if L > 1:
            RL = np.empty((L - 1, n))
            RS = np.empty((L - 1, n))
            RL[L - 2], RS[L - 2] = top
            if L > 2:
                RL[: L - 2], RS[: L - 2] = Lt[: L - 2], St[: L - 2]
            S = np.cumsum(RL[::-1], axis=0)[::-1]  # log|g_{i+1}|
            SS = np.cumprod(RS[::-1], axis=0)[::-1]
            LB[: L - 1] = Ll[: L - 1] + S
            SB[: L - 1] = Sl[: L - 1] * SS
        return LB, SB, LB + LA, SB * SA


# ---------------------------------------------------------------------------------------------
# Dense networks
# ---------------------------------------------------------------------------------------------


def _check_scale(v):
    m = np.max(np.abs(v), axis=-1)
    if not (np.all(m <= _DENSE_SAFE) and np.all((m >= 1 / _DENSE_SAFE) | (m == 0))):
        raise _Rescale()


def _dense_linear(inp: _Inputs, zs, As, log_space: bool, want) -> tuple:
    """The linear backward pass of a residual dense network (module docstring); raises
    :class:`_Rescale` where a product could leave the normal range or a factor underflowed."""
    net, L = inp.net, inp.net.depth
    alphas = inp.alphas
    zL, aL = zs[L], As[L]
    y = inp.values["y"]
    deltas, g = [None] * (L + 1), None
    with np.errstate(over="raise", under="raise", invalid="raise"):
        if _residual_output(net):
            g = aL - y  # ∂C/∂a^L (quadratic cost)
            if np.any((np.abs(g) < _tiny_of(g)) & (g != 0)):
                raise _Rescale()
    for l in range(L, 0, -1):
        act, z = net.activations[l - 1], zs[l]
        if l < L or _residual_output(net):
            gp = act.grad(z)
            if _low_with_log(gp, lambda m: act.log_abs_grad(z[m])):
                raise _Rescale()
            _check_scale(g)
            with np.errstate(over="raise", under="raise", invalid="raise"):
                deltas[l] = gp * g if alphas[l - 1] is None else (alphas[l - 1] * gp) * g
        else:
            deltas[l] = _linear_output_delta(inp, zL, aL)
        if l == 1:
            break
        _check_scale(deltas[l])
        W = inp.values["W%d" % l]
        Wa = np.abs(W)
        nz = Wa[Wa > 0]
        if nz.size and (nz.min() < 1 / _DENSE_SAFE or nz.max() > _DENSE_SAFE):
            raise _Rescale()
        with np.errstate(over="raise", under="raise", invalid="raise"):
            v = _vecmat(deltas[l], W, inp.batched["W%d" % l])
            if alphas[l - 1] is not None:
                v = v + g  # g^{l−1} = W_lᵀ δ^l + g^l
            if not np.all(np.isfinite(v)):
                raise _Rescale()
        g = v
    grads, log_abs_d, sign_d = {}, ({} if log_space else None), ({} if log_space else None)
    for l in range(1, L + 1):
        bn, wn = "b%d" % l, "W%d" % l
        d = deltas[l]
        if bn in want:
            grads[bn] = d
            if log_space:
                log_abs_d[bn], sign_d[bn] = log_abs(d), np.sign(d)
        if wn in want:
            a = As[l - 1]
            if l > 1 and alphas[l - 2] is None and _low_with_log(a, lambda m: log_abs_value(net.activations[l - 2], zs[l - 1][m])):
                raise _Rescale()
            with np.errstate(over="raise", under="raise", invalid="raise"):
                gw = d[..., :, None] * a[..., None, :]
            grads[wn] = gw
            if log_space:
                log_abs_d[wn], sign_d[wn] = log_abs(gw), np.sign(gw)
    return grads, deltas[1:], log_abs_d, sign_d


def dense_backprop(inp: _Inputs, *, log_space: bool, wrt):
    """A residual dense network's backward pass: the linear pass where it is safe, else every
    δ^l and g^l = ∂C/∂a^l carried as m·2^k per entry (linear values to a few ulps wherever they
    are representable, log|·| finite where they are not).  Returns a BackpropResult."""
    net, L = inp.net, inp.net.depth
    dt = inp.dtype
    alphas = inp.alphas
    zs, As = _dense_forward(inp)
    f64 = lambda x: np.asarray(x, dtype=np.float64)  # noqa: E731
    zL, aL = zs[L], As[L]
    loss = _dense_loss(inp, zL, aL)
    want = set(net.parameters if wrt is None else wrt)
    try:
        grads, deltas, log_abs_d, sign_d = _dense_linear(inp, zs, As, log_space, want)
        return _dense_result(inp, grads, deltas, loss, log_abs_d, sign_d)
    except (_Rescale, FloatingPointError):
        pass
    grads, log_abs_d, sign_d = {}, ({} if log_space else None), ({} if log_space else None)
    deltas = []
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        zl = f64(zL)
        y = np.broadcast_to(f64(inp.values["y"]), zl.shape)
        delta = [None] * (L + 1)
        g = _nl.split_diff(f64(aL), y) if _residual_output(net) else None
        for l in range(L, 0, -1):
            act, z = net.activations[l - 1], f64(zs[l])
            if l < L or _residual_output(net):
                lead = _nl.split_grad(act, z)
                if alphas[l - 1] is not None:
                    lead = _nl.smul(_nl.split(np.float64(alphas[l - 1])), lead)
                delta[l] = _nl.smul(lead, g)
            else:
                delta[l] = _split_output(net, f64(aL), zl, y)
            if l == 1:
                break
            v = _rescaled_vecmat(delta[l], f64(inp.values["W%d" % l]), inp.batched["W%d" % l])
            if alphas[l - 1] is not None:
                v = _sadd(v, g)  # g^{l−1} = W_lᵀ δ^l + g^l
            g = v
        for l in range(1, L + 1):
            dv = _nl.value(delta[l], dt)
            deltas.append(dv)
            bn, wn = "b%d" % l, "W%d" % l
            if bn in want:
                grads[bn] = dv
            if wn not in want and not (log_space and bn in want):
                continue
            if l == 1 or alphas[l - 2] is not None:
                ap = _nl.split(f64(As[l - 1]))
            else:
                ap = _nl.split_value(net.activations[l - 2], f64(zs[l - 1]), f64(As[l - 1]))
            M, E = delta[l]
            outer = _nl.smul((M[..., :, None], E[..., :, None]), (ap[0][..., None, :], ap[1][..., None, :]))
            if wn in want:
                grads[wn] = _nl.value(outer, dt)
            if log_space:
                if bn in want:
                    log_abs_d[bn], sign_d[bn] = _nl.log_of(delta[l])
                if wn in want:
                    log_abs_d[wn], sign_d[wn] = _nl.log_of(outer)
    return _dense_result(inp, grads, deltas, loss, log_abs_d, sign_d)




# ---------------------------------------------------------------------------------------------
# The compiled residual chain kernel, generated from each activation's printed stable form
# ---------------------------------------------------------------------------------------------

# The activations' forms come from symgrad.numeric._codegen (``form_of``: each activation's one
# stable φ, φ' printed into ``def phi(z): … return (φ, φ', uf)``; ``bounds_of``: its log-bounds
# ``def bnd(z): return (V, U)``, log|φ| ≤ V, log|φ'| ≤ U); only the loop around them is written
# here, once for every activation.  Per layer j (0-based) of a block, sample by sample:
#     forward:   A[j] = a_j;  z = w a + b;  D[j] = ℓ = c_j φ'(z);  a ← r_j a + c_j φ(z)
#     backward:  δ_j = ℓ g (the output layer: ∂C/∂z_L);  A[j] ← A[j] δ_j;  g ← r_j g + w_j δ_j
# with c_j = α_j, r_j = 1 for a residual layer and c_j = 1, r_j = 0 for a plain one.  A sample is
# flagged for the rescaled redo (``chain_scaled``) where a value leaves the normal range from
# nonzero factors, as the plain kernel flags them (symgrad.numeric._codegen's module docstring); a
# non-finite z (or a) stops the block with the layer as status, for the exact diagnosis.
#
# Except where the bounds certify the exact result.  In a residual layer whose φ'(z_j) (or c_j φ'(z_j))
# underflows, if |c_j w_j φ'(z_j)| < 2^−60 then 1 + c_j w_j φ'(z_j) rounds to 1, so g_{j−1} = g_j
# exactly, and only δ_j = c_j φ'(z_j) g_j and ∂C/∂w_j = a_{j−1} δ_j depend on φ'(z_j): the entry is
# marked, D[j] holding the bound U + log|c_j| (as a float32 in a NaN's payload, ``_box``: D is
# otherwise a finite c_j φ'(z_j), so the NaN is the mark) and A[j] = a_{j−1} as usual.  The backward
# writes δ_j = ∂C/∂w_j = 0 where e^{U + log|c_j|}·|g_j|·max(|a_{j−1}|, 1) is below e^−746 < 2^−1075,
# where the exact values round to 0.  Elsewhere (the band: |z_j| just past φ''s underflow, g_j and
# a_{j−1} large) it writes D[j] = g_j, keeps A[j] = a_{j−1} and sets MK[j] (one flag per entry,
# written for every entry so the loop stays vectorised): ``fix_band`` then forms both products from
# log|φ'(z_j)| in NumPy, entry by entry, with no sample redone.  Likewise a_j = a_{j−1} where φ(z_j)
# underflows but |c_j| e^V < 2^−56 |a_{j−1}|, below half an ulp of a_{j−1}.  (|x| < 2^_e2(x) from x's
# exponent bits; the margins, 2 bits and 0.87 in log, exceed the rounding of V and U, and of U to
# float32 (2^−24 relative), wherever the test is close.)  In a deep residual softplus chain (a grows,
# so z_j reaches −10^6) this is most entries of most samples, and the band about 0.3% of them.
_RES_LAYER = """\
        if k == {k}:
            for i in range(m):
                ai = a[i]
                wi = w[i]
                zi = wi * ai + b[i]
                pi, di, ufi = phi{k}(zi)
                vb, ub = bnd{k}(zi)
                li = cj * di
                zsub = (abs(zi) < TINY) & (zi != 0.0)
                plost = (abs(pi) < TINY) & ((pi != 0.0) | ufi)
                dlost = ((abs(di) < TINY) & ((di != 0.0) | ufi)) | _lost(li, cj, di)
                pok = res & ((vb + lcj) < (_e2(ai) - 56.0) * LN2)
                ulc = ub + lcj
                mk = res & dlost & ~zsub & ((ulc + _e2(wi) * LN2) < -42.0)
                an = ai if (plost & pok) else rj * ai + cj * pi
                drow[i] = _box(ulc) if mk else li
                arow[i] = ai
                a[i] = an
                z[i] = zi
                bad |= ~((abs(zi) <= HUGE) & (abs(an) <= HUGE) & (abs(di) <= HUGE))
                fl[i] |= zsub | (plost & ~pok) | (dlost & ~mk)
"""

#: The fast pass (``res_*_fast``): the same values with a per-sample flag for a superset of every
#: condition above, marks and certificates included (any φ or φ' below the smallest normal, or 0
#: with ``uf`` set), no bounds, no marks; ``res_redo`` gathers the flagged samples into one
#: contiguous batch, runs the exact pass on it and scatters δ, ∂C/∂w, the marks and the flags back
#: (not the loss: the fast pass's forward is the exact pass's, bit for bit).  It reads ``uf`` as the exact pass does, so LLVM forms the same products and fused
#: multiply-adds in both (a sample gets the same values through either).  Its backward need not
#: test g_{j−1} = r_j g_j + w_j δ_j for overflow, as the exact one does for its marked entries: an
#: infinite g makes the next layer's δ infinite or nan, which is flagged (g_0 is not an output).
#: (Neither tests the top δ of a cancelling output, σ(z_L) − y: it is finite.)
_RES_LAYER_FAST = """\
        if k == {k}:
            for i in range(m):
                ai = a[i]
                wi = w[i]
                zi = wi * ai + b[i]
                pi, di, ufi = phi{k}(zi)
                li = cj * di
                an = rj * ai + cj * pi
                drow[i] = li
                arow[i] = ai
                a[i] = an
                z[i] = zi
                fl[i] |= (~((abs(zi) <= HUGE) & (abs(an) <= HUGE) & (abs(di) <= HUGE)) | ((abs(zi) < TINY) & (zi != 0.0))
                          | {small_p} | {small_d} | _lost2(li, cj, di))
"""

_RES_KERNEL = '''\
def _lost(x, p, q):
    return ~(abs(x) <= HUGE) | ((abs(x) < TINY) & ((x != 0.0) | ((p != 0.0) & (q != 0.0))))


def _box(u):
    return np.int64(np.float32(u).view(np.int32) & 0xFFFFFFFF | 0x7FF8000000000000).view(np.float64)


def _unbox(x):
    return np.int32(np.float64(x).view(np.int64) & 0xFFFFFFFF).view(np.float32)


def _e2(x):
    return (np.int64(((np.float64(x).view(np.int64) >> 52) & 2047) | E2_MAGIC).view(np.float64) - E2_SHIFT) - 1022.0


def res_forward(W, B, kinds, C, R, a0, s, e, A, oA, D, oD, aL, zL, fl):
    L = len(W)
    m = e - s
    a = np.empty(m)
    z = np.empty(m)
    for i in range(m):
        a[i] = a0[i]
    for j in range(L):
        w = W[j][s:e]
        b = B[j][s:e]
        arow = A[j, oA:oA + m]
        drow = D[j, oD:oD + m]
        cj = C[j]
        rj = R[j]
        res = rj == 1.0
        lcj = math.log(abs(cj)) if cj != 0.0 else -INF
        k = kinds[j]
        bad = False
{layers}
        if bad:
            return j + 1
    for i in range(m):
        aL[i] = a[i]
        zL[i] = z[i]
    return 0


{output}


def res_backward(W, R, s, D, oD, A, oA, m, dL, cancel, fl, MK, mo):
    L = D.shape[0]
    g = np.empty(m)
    for i in range(m):
        g[i] = dL[i]
    for j in range(L - 1, -1, -1):
        drow = D[j, oD:oD + m]
        arow = A[j, oA:oA + m]
        w = W[j][s:s + m]
        rj = R[j]
        mrow = MK[j, mo:mo + m]  # (MK[j] keeps LLVM from vectorising the loop: 1.5 times slower)
        top = cancel and j == L - 1
        for i in range(m):
            li = drow[i]
            mk = li != li
            gi = g[i]
            di = gi if top else li * gi
            ai = arow[i]
            qi = ai * di
            wi = w[i]
            ui = wi * di
            fix = mk & ((_unbox(li) + (max(_e2(ai), 0.0) + _e2(gi)) * LN2) >= -746.0)
            mrow[i] = fix
            drow[i] = gi if fix else (0.0 if mk else di)
            arow[i] = ai if fix else (0.0 if mk else qi)
            gn = rj * gi + (0.0 if mk else ui)
            g[i] = gn
            fl[i] |= (~mk & ((_lost(di, li, gi) & ~top) | _lost(qi, ai, di) | _lost(ui, wi, di))) | ~(abs(gn) <= HUGE)
    for i in range(m):
        if fl[i]:
            return True
    return False


def _lost2(x, p, q):
    return ~(abs(x) <= HUGE) | ((abs(x) < TINY) & (p != 0.0) & (q != 0.0))


def res_forward_fast(W, B, kinds, C, R, a0, s, e, A, oA, D, oD, aL, zL, fl):
    L = len(W)
    m = e - s
    a = np.empty(m)
    z = np.empty(m)
    for i in range(m):
        a[i] = a0[i]
    for j in range(L):
        w = W[j][s:e]
        b = B[j][s:e]
        arow = A[j, oA:oA + m]
        drow = D[j, oD:oD + m]
        cj = C[j]
        rj = R[j]
        k = kinds[j]
{layers_fast}
    for i in range(m):
        aL[i] = a[i]
        zL[i] = z[i]


def res_backward_fast(W, R, s, D, oD, A, oA, m, dL, cancel, fl):
    L = D.shape[0]
    g = np.empty(m)
    for i in range(m):
        g[i] = dL[i]
    for j in range(L - 1, -1, -1):
        drow = D[j, oD:oD + m]
        arow = A[j, oA:oA + m]
        w = W[j][s:s + m]
        rj = R[j]
        top = cancel and j == L - 1
        for i in range(m):
            li = drow[i]
            gi = g[i]
            di = gi if top else li * gi
            ai = arow[i]
            qi = ai * di
            wi = w[i]
            ui = wi * di
            drow[i] = di
            arow[i] = qi
            gn = rj * gi + ui
            g[i] = gn
            fl[i] |= (_lost2(di, li, gi) & ~top) | _lost2(qi, ai, di) | _lost2(ui, wi, di)


def res_chain_block_fast(W, B, kinds, C, R, a0, y, s, e, A, oA, D, oD, cross_entropy, sig_out, loss, fl):
    m = e - s
    aL = np.empty(m)
    zL = np.empty(m)
    dL = np.empty(m)
    res_forward_fast(W, B, kinds, C, R, a0[s:e], s, e, A, oA, D, oD, aL, zL, fl)
    res_output(zL, aL, y, s, m, cross_entropy, sig_out, loss, dL)
    res_backward_fast(W, R, s, D, oD, A, oA, m, dL, cross_entropy and sig_out, fl)
    n = 0
    for i in range(m):
        n += fl[i]
    return n


def res_chain_block(W, B, kinds, C, R, a0, y, s, e, A, oA, D, oD, cross_entropy, sig_out, loss, fl, MK, mo):
    m = e - s
    aL = np.empty(m)
    zL = np.empty(m)
    status = res_forward(W, B, kinds, C, R, a0[s:e], s, e, A, oA, D, oD, aL, zL, fl)
    if status > 0:
        return status
    dL = np.empty(m)
    res_output(zL, aL, y, s, m, cross_entropy, sig_out, loss, dL)
    if res_backward(W, R, s, D, oD, A, oA, m, dL, cross_entropy and sig_out, fl, MK, mo):
        return -1
    return 0
'''


_RES_REDO = '''
def res_redo(W, B, kinds, C, R, a0, y, s, e, A, oA, D, oD, cross_entropy, sig_out, loss, fl, MK):
    m = e - s
    L = len(W)
    nf = 0
    for i in range(m):
        nf += fl[i]
    idx = np.empty(nf, dtype=np.int64)
    k = 0
    for i in range(m):
        if fl[i]:
            idx[k] = i
            k += 1
    Wg = np.empty((L, nf))
    Bg = np.empty((L, nf))
    for j in range(L):
        w = W[j]
        b = B[j]
        for q in range(nf):
            Wg[j, q] = w[s + idx[q]]
            Bg[j, q] = b[s + idx[q]]
    a0g = np.empty(nf)
    yg = np.empty(nf)
    for q in range(nf):
        a0g[q] = a0[s + idx[q]]
        yg[q] = y[s + idx[q]]
    Ag = np.empty((L, nf))
    Dg = np.empty((L, nf))
    lg = np.empty(nf)
    fg = np.zeros(nf, dtype=np.bool_)
    Mg = np.empty((L, nf), dtype=np.bool_)
    status = res_chain_block(Wg, Bg, kinds, C, R, a0g, yg, 0, nf, Ag, 0, Dg, 0, cross_entropy, sig_out, lg, fg, Mg, 0)
    if status > 0:
        return status
    for j in range(L):
        for q in range(nf):
            i = idx[q]
            A[j, oA + i] = Ag[j, q]
            D[j, oD + i] = Dg[j, q]
            MK[j, i] = Mg[j, q]
    for q in range(nf):
        fl[idx[q]] = fg[q]
    return status
'''


def kernel_source(forms: tuple) -> str:
    """The module text of the residual chain kernel for these distinct printed (form, bounds) pairs
    (``_codegen.form_of``, ``_codegen.bounds_of``): the forms as ``phi0``, ``phi1``, …, the bounds
    as ``bnd0``, ``bnd1``, … and the loop above around them."""
    parts = []
    for k, (f, bd) in enumerate(forms):
        assert f.startswith("def phi(z):\n") and bd.startswith("def bnd(z):\n")
        parts.append("def phi%d(z):\n" % k + f[len("def phi(z):\n"):])
        parts.append("def bnd%d(z):\n" % k + bd[len("def bnd(z):\n"):])
    layers = "".join(_RES_LAYER.format(k=k) for k in range(len(forms)))
    small = "((abs({x}) < TINY) & (({x} != 0.0) | ufi))"
    fast = [_RES_LAYER_FAST.format(k=k, small_p=small.format(x="pi"), small_d=small.format(x="di")) for k in range(len(forms))]
    from symgrad.numeric import _codegen

    output = _codegen.OUTPUT_SOURCE.replace("def output(", "def res_output(", 1).rstrip("\n")
    return "\n\n".join(parts) + "\n\n" + (_RES_KERNEL.replace("{layers_fast}", "".join(fast)).replace("{layers}", layers)
                                            .replace("{output}", output)) + _RES_REDO


_KERNELS: dict = {}


def chain_kernel(forms: tuple):
    """The compiled ``(res_chain_block_fast, res_redo, res_chain_block)`` for these distinct layer forms (each
    compiled on first use, about a second; at most 64 kept).  The text is made only of the forms
    _codegen printed and of this module's fixed template, and runs through
    ``_codegen._run_generated`` (the one audited exec)."""
    if forms in _KERNELS:
        return _KERNELS[forms]
    from symgrad.numeric import _codegen
    from symgrad.numeric import compiled as _jit

    numba = _jit.numba_module()
    ns = _codegen._run_generated(kernel_source(forms), flush=True)
    opts = dict(nogil=True, fastmath={"contract"}, error_model="numpy")
    for k in range(len(forms)):
        ns["phi%d" % k] = numba.njit(inline="always", **opts)(ns["phi%d" % k])
        ns["bnd%d" % k] = numba.njit(inline="always", **opts)(ns["bnd%d" % k])
    for name in ("_lost", "_lost2", "_box", "_unbox", "_e2", "res_forward", "res_output", "res_backward", "res_chain_block",
                 "res_forward_fast", "res_backward_fast", "res_chain_block_fast", "res_redo"):
        ns[name] = numba.njit(**opts)(ns[name])
    if len(_KERNELS) >= 64:
        _KERNELS.pop(next(iter(_KERNELS)))
    _KERNELS[forms] = (ns["res_chain_block_fast"], ns["res_redo"], ns["res_chain_block"])
    return _KERNELS[forms]


def jit_kernel(inp: _Inputs):
    """(kernels, kinds, c, r, hint) for a residual chain: the compiled fast and exact kernels of its
    distinct activation forms, each layer's index into them, c_l (α_l or 1) and r_l (1 or 0) per
    layer, and a hint for :func:`jit_block` (set once the fast pass flagged more than a sixteenth of a
    block's samples: the later blocks of this call then skip it)."""
    from symgrad.numeric import _codegen

    net = inp.net
    forms, kinds = {}, []
    for act in net.activations:
        kinds.append(forms.setdefault((_codegen.form_of(act), _codegen.bounds_of(act)), len(forms)))
    c = np.array([1.0 if a is None else float(a) for a in inp.alphas])
    r = np.array([0.0 if a is None else 1.0 for a in inp.alphas])
    return chain_kernel(tuple(forms)), np.array(kinds, dtype=np.int64), c, r, {"exact": False}


def jit_block(inp: _Inputs, jk, rows, s, e, D, oD, A, oA, loss, fixes=None):
    """One block through the compiled residual kernel, writing D[:, oD:oD+m] (δ), A[:, oA:oA+m]
    (∂C/∂w) and loss[s:e]; raises ``_NonFiniteBlock`` / ``_RescaleSamples`` as the plain kernel does.
    The fast pass runs first and the exact pass redoes the samples it flags, gathered into one batch
    (``res_redo``), or all of the block where it flags more than a sixteenth of them (a gathered
    sample costs about three times its share of the block's exact pass: 2.3 against 0.7 µs at
    depth 50), and then every later block of the call (a deep residual chain whose z reaches 10^4
    has an underflowed φ' in most samples).  The band entries the exact pass leaves
    (:func:`fix_band`) are fixed here, or, given a list ``fixes`` (D, A are then the full outputs,
    oD = oA = s), appended to it as (layers, samples) for one :func:`fix_band` over a thread's
    blocks, before its redo."""
    from symgrad.numeric.inputs import _NonFiniteBlock

    (fast, redo, exact), kinds, c, r, hint = jk
    WL, BL, a0, y = rows
    net = inp.net
    m, L = e - s, net.depth
    flags = np.zeros(m, dtype=np.bool_)
    sig_out = bool(net.activations[-1].logistic) and not _residual_output(net)
    args = (WL, BL, kinds, c, r, a0, y, s, e, A, oA, D, oD, net.loss.domain_open_unit, sig_out, loss, flags)
    if not hint["exact"]:
        n = fast(*args)
        if n == 0:
            return
        if n > m // 16:  # many flags: the whole block through the exact pass is cheaper
            hint["exact"] = True
    if hint["exact"]:
        flags[:] = False
        MK = np.empty((L, m), dtype=np.bool_)
        status = exact(*args, MK, 0)
    else:
        MK = np.zeros((L, m), dtype=np.bool_)
        status = redo(*args, MK)
    if status > 0:
        raise _NonFiniteBlock(status - 1)
    jj, ii = np.divmod(np.flatnonzero(MK), m)
    if jj.size:
        if fixes is not None:
            fixes.append((jj, ii + s))
        else:
            fix_band(inp, c, jj, ii + s, D, oD - s, A, oA - s)
    if status < 0:
        raise _RescaleSamples(flags)


def fix_band(inp: _Inputs, c, jj, smp, D, oD, A, oA):
    """The band entries the compiled residual kernel left: residual layers j where φ'(z_j)
    underflowed and 1 + c_j w_j φ'(z_j) rounds to 1 (so g_{j−1} = g_j exactly), yet δ_j = c_j φ'(z_j) g_j
    or ∂C/∂w_j = a_{j−1} δ_j may be representable.  At layers ``jj`` of samples ``smp`` the kernel
    wrote D[j, oD + i] = g_j and A[j, oA + i] = a_{j−1}; z_j = w_j a_{j−1} + b_j is formed again and
    both products as scaled numbers m·2^k from log|φ'(z_j)| (``logspace.split``), each rounded
    once: from log|φ'(z_j)| in every entry, whether φ'(z_j) or c_j φ'(z_j) underflowed."""
    ii, ia = smp + oD, smp + oA
    w, b = np.empty(len(jj)), np.empty(len(jj))
    order = np.argsort(jj, kind="stable")
    js = jj[order]
    cut = np.flatnonzero(np.diff(js)) + 1
    for p0, p1 in zip(np.r_[0, cut], np.r_[cut, len(js)]):  # one run per layer
        at = order[p0:p1]
        w[at], b[at] = inp.ws[js[p0]][smp[at]], inp.bs[js[p0]][smp[at]]
    a = A[jj, ia].astype(np.float64)
    g = D[jj, ii].astype(np.float64)
    groups = _groups(inp.net)
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        z = w * a + b
        for act, rows in groups.items():
            sel = slice(None) if len(groups) == 1 else np.isin(jj, rows)
            zs = z[sel]
            gp = _nl.split(np.zeros(zs.shape), lambda q, zs=zs, act=act: act.log_abs_grad(zs[q]),
                           lambda q, zs=zs, act=act: grad_sign(act, zs[q]))
            d = _nl.smul(_nl.smul(gp, _nl.split(c[jj[sel]])), _nl.split(g[sel]))
            D[jj[sel], ii[sel]] = _nl.value(d, D.dtype)
            A[jj[sel], ia[sel]] = _nl.value(_nl.smul(d, _nl.split(a[sel])), A.dtype)


def scaled_samples(inp: _Inputs, idx, D, A, base, loss):
    """The rescaled redo (:func:`chain_scaled`) of the samples ``idx`` only, gathered into one batch;
    D, A hold the rows of the block that starts at sample ``base`` (``chain._scaled_samples``)."""
    _scaled_samples(inp, idx, D, A, base, loss, chain_scaled)
