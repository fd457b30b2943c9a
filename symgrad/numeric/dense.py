"""Dense networks: batched forward pass and backpropagation of δ^l = Σ'(z^l) (W^{l+1})ᵀ δ^{l+1}, in linear and log space."""

from __future__ import annotations

import math

import numpy as np

from symgrad.numeric import logspace as _nl
from symgrad.numeric.logspace import log_abs, log_abs_value
from symgrad.errors import InvalidArgument
from symgrad.numeric.inputs import _Inputs, _Rescale, _base_shape, _tiny_of
from symgrad.numeric.output import _minus_y, _output_delta, _split_output
from symgrad.numeric.result import BackpropResult


# ---------------------------------------------------------------------------------------------
# Dense networks
# ---------------------------------------------------------------------------------------------


def _matvec(W, v, batched_W):
    """z = W v for v of shape (..., n_in); W (n_out, n_in) or (B, n_out, n_in)."""
    if batched_W:
        return np.matmul(W, v[..., None])[..., 0]
    return v @ W.T


def _vecmat(v, W, batched_W):
    """Wᵀ v for v (..., n_out)."""
    if batched_W:
        return np.matmul(v[..., None, :], W)[..., 0, :]
    return v @ W


def _dense_forward(inp: _Inputs):
    net, L = inp.net, inp.net.depth
    a = inp.values["a0"]
    zs, As = [None], [a]
    with np.errstate(over="raise", invalid="raise"):
        for l, act in enumerate(net.activations, start=1):
            W, b = inp.values["W%d" % l], inp.values["b%d" % l]
            try:
                z = _matvec(W, a, inp.batched["W%d" % l]) + b
            except FloatingPointError:
                # A partial sum or product overflowed; z itself may not: scale W and b by a
                # power of two small enough for every sum of n terms, then scale z back.
                sh = math.ldexp(1.0, -(math.ceil(math.log2(W.shape[-1] + 1)) + 1))
                try:
                    z = (_matvec(W * sh, a, inp.batched["W%d" % l]) + b * sh) / sh
                except FloatingPointError:
                    with np.errstate(over="ignore", invalid="ignore"):
                        zz = (_matvec(W * sh, a, inp.batched["W%d" % l]) + b * sh) / sh
                    bad = np.argwhere(~np.isfinite(zz))[0]
                    raise InvalidArgument(
                        "the forward pass overflows %s at layer %d (z%d = W%d a%d + b%d exceeds %.4g) at index %s; "
                        "scale the parameters down" % (inp.dtype.name, l, l, l, l - 1, l,
                                                       float(np.finfo(inp.dtype).max), tuple(int(i) for i in bad))
                    ) from None
            a = act.value(z)
            alpha = inp.alphas[l - 1] if inp.alphas is not None else None
            if alpha is not None:  # a residual layer: a^l = a^{l−1} + α_l φ(z^l)
                a = _residual_sum(As[-1], alpha, a, inp.dtype, l)
            zs.append(z)
            As.append(a)
    return zs, As


def _residual_sum(prev, alpha, phi, dtype, l):
    """a^l = a^{l−1} + α_l φ(z^l); InvalidArgument naming the layer and the index where it
    exceeds the dtype's range."""
    with np.errstate(over="ignore", invalid="ignore"):
        a = prev + alpha * phi
    if not np.isfinite(a).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        raise InvalidArgument(
            "the forward pass overflows %s at residual layer %d (a%d = a%d + α·φ(z%d) exceeds %.4g) at index %s; "
            "scale the parameters or α down" % (np.dtype(dtype).name, l, l, l - 1, l, float(np.finfo(dtype).max), bad))
    return a


def _dense_loss(inp, zL, aL):
    net = inp.net
    y = inp.values["y"]
    per = _output_delta(net, aL, zL, y)[1]
    with np.errstate(over="ignore"):
        return np.sum(per, axis=-1)


def _rescaled_vecmat(x, W, batched_W):
    """Wᵀ x for x = (M, E) per sample (last axis: units), as (M, E): x is brought to one power of
    two per sample, small enough that no sum can overflow (|Σ_i W_ij m_i| ≤ n·max|W|·2^−⌈log2 n⌉−1),
    multiplied linearly, and split again."""
    M, E = x
    nz = M != 0
    k = np.max(np.where(nz, E, -np.inf), axis=-1, keepdims=True)
    k = np.where(np.isfinite(k), k, 0.0)
    sh = math.ceil(math.log2(max(M.shape[-1], 1))) + 1
    ms = np.ldexp(M, np.clip(E - k - sh, -2000, 0).astype(np.int32))
    v = _vecmat(ms, W, batched_W)
    vm, ve = np.frexp(v)
    return vm, ve + k + sh


#: The linear dense pass is trusted while every |δ| (per sample, its largest entry) and every
#: nonzero |W| lies within 2^±500: no product can then overflow or fall below the normal range.
_DENSE_SAFE = 2.0 ** 500


def _low_with_log(x, logfn) -> bool:
    """Some |x| < TINY although its exact value is not 0 (``logfn`` of those entries is finite)."""
    low = np.abs(x) < _tiny_of(x)
    return bool(low.any() and np.isfinite(logfn(low)).any())


def _linear_output_delta(inp: _Inputs, zL, aL):
    """δ^L = ∂C/∂z^L of a plain output layer in linear space; :class:`_Rescale` where a factor
    underflowed or a − y lost its digits (the rescaled pass then forms it as m·2^k)."""
    net = inp.net
    out, y = net.activations[-1], inp.values["y"]
    if net.loss.cancels_with(out):
        # a^L − y from the logit(s): σ(z^L) − y, or softmax(z^L) − y (output.py)
        d = _minus_y(out, aL, zL, y).astype(inp.dtype, copy=False)
        if np.any(np.abs(d) < _tiny_of(d)):
            raise _Rescale()
        return d
    g = out.grad(zL)
    if _low_with_log(g, lambda m: out.log_abs_grad(zL[m])) or _low_with_log(aL, lambda m: log_abs_value(out, zL[m])):
        raise _Rescale()
    with np.errstate(over="raise", under="raise", invalid="raise", divide="raise"):
        diff = _minus_y(out, aL, zL, y)
        if np.any(np.abs(diff) < _tiny_of(diff)):
            raise _Rescale()
        d = g * diff
        if net.loss.domain_open_unit:
            d = d / (aL * (1.0 - aL))
    return d


def _dense_linear(inp: _Inputs, zs, As, log_space: bool, want) -> tuple:
    """The plain linear backward pass, for the common case; raises :class:`_Rescale` where a
    product could leave the normal range or a factor underflowed, for :func:`_dense_backprop`'s
    rescaled pass."""
    net, L = inp.net, inp.net.depth
    zL, aL = zs[L], As[L]
    safe = _DENSE_SAFE

    def check_scale(v):
        m = np.max(np.abs(v), axis=-1)
        if not (np.all(m <= safe) and np.all((m >= 1 / safe) | (m == 0))):
            raise _Rescale()

    d = _linear_output_delta(inp, zL, aL)
    deltas = [None] * (L + 1)
    deltas[L] = d
    for l in range(L, 1, -1):
        check_scale(deltas[l])
        W = inp.values["W%d" % l]
        Wa = np.abs(W)
        nz = Wa[Wa > 0]
        if nz.size and (nz.min() < 1 / safe or nz.max() > safe):
            raise _Rescale()
        act, z = net.activations[l - 2], zs[l - 1]
        g = act.grad(z)
        if _low_with_log(g, lambda m: act.log_abs_grad(z[m])):
            raise _Rescale()
        with np.errstate(over="raise", under="raise", invalid="raise"):
            v = _vecmat(deltas[l], W, inp.batched["W%d" % l])
            if not np.all(np.isfinite(v)):
                raise _Rescale()
            deltas[l - 1] = g * v
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
            if l > 1 and _low_with_log(a, lambda m: log_abs_value(net.activations[l - 2], zs[l - 1][m])):
                raise _Rescale()
            with np.errstate(over="raise", under="raise", invalid="raise"):
                gw = d[..., :, None] * a[..., None, :]
            grads[wn] = gw
            if log_space:
                log_abs_d[wn], sign_d[wn] = log_abs(gw), np.sign(gw)
    return grads, deltas[1:], log_abs_d, sign_d


def _dense_backprop(inp: _Inputs, *, log_space: bool, wrt) -> BackpropResult:
    """The linear pass (:func:`_dense_linear`) where it is safe; else δ^l carried as m·2^k per
    entry (``_numeric_logs.split``): linear values to a few ulps wherever they are
    representable, ±inf or 0 where they are not, and log|δ^l| finite even where δ^l underflows
    or overflows.  Factors that underflow in linear space (σ'(−800)) come from their logs."""
    net, L = inp.net, inp.net.depth
    dt = inp.dtype
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
        delta[L] = _split_output(net, f64(aL), zl, y)
        for l in range(L, 1, -1):
            v = _rescaled_vecmat(delta[l], f64(inp.values["W%d" % l]), inp.batched["W%d" % l])
            delta[l - 1] = _nl.smul(_nl.split_grad(net.activations[l - 2], f64(zs[l - 1])), v)
        for l in range(1, L + 1):
            dv = _nl.value(delta[l], dt)
            deltas.append(dv)
            bn, wn = "b%d" % l, "W%d" % l
            if bn in want:
                grads[bn] = dv
            if wn not in want and not (log_space and bn in want):
                continue
            if l == 1:
                ap = _nl.split(f64(As[0]))
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


def _dense_result(inp, grads, deltas, loss, log_abs_d, sign_d) -> BackpropResult:
    net = inp.net
    # Unbatched inputs with batched parameters (or vice versa) broadcast to the batch.
    if inp.batch is not None:
        B = inp.batch
        grads = {k: np.broadcast_to(v, (B,) + _base_shape(net, k)) if v.ndim == len(_base_shape(net, k)) else v for k, v in grads.items()}
        deltas = [d if d.ndim == 2 else np.broadcast_to(d, (B,) + d.shape) for d in deltas]
    return BackpropResult(grads, deltas, loss, sign_d, log_abs_d, inp.batch)


