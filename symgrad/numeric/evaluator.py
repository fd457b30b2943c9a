"""The NumPy evaluator's entry points: :func:`backprop` and :func:`forward`, for chains and dense networks."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from symgrad.numeric import compiled as _jit
from symgrad.errors import InvalidArgument
from symgrad.symbolic.networks import Chain, Network
from symgrad.numeric.chain import JIT_BLOCK, _BACKENDS, _chain_blocks, _chain_forward, _check_block_finite, _generic_block, _jit_block, _log_block, _scaled_block, _sigmoid_block, _use_jit
from symgrad.numeric.dense import _dense_backprop, _dense_forward, _dense_loss
from symgrad.numeric.inputs import DEFAULT_BLOCK, _Inputs, _NonFiniteBlock, _Rescale, _backprop_bytes, _check_memory, _known_names, _validate
from symgrad.numeric.output import _is_sigmoid, _output_delta
from symgrad.numeric.result import BackpropResult

__all__ = ['backprop', 'forward']


def backprop(net, params, *, log_space=False, wrt=None, block_size=None, threads=None, backend="auto",
             out=None) -> BackpropResult:
    """Forward and backward pass: every parameter's gradient, the δ^l and the layer norms.

    ``log_space=True`` adds ``log|∂C/∂p|`` and the sign for every gradient, accumulated as sums
    of ``log|w|`` and ``log|φ'(z)|`` so that they stay finite where the product underflows
    (a depth-100000 sigmoid chain).  ``wrt`` restricts the returned gradients (to save memory).
    Chains run in blocks of at most ``block_size`` samples along the batch axis (default 32768
    for NumPy, 4096 for the compiled kernel), on ``threads`` threads (default: the CPU count, at
    most 8); the kernels release the GIL, so blocks run in parallel.  Only the outputs asked for
    are held in full.

    ``backend``: ``"auto"`` (default) uses the compiled kernel of :mod:`symgrad.numeric.compiled` for large
    all-sigmoid chains when numba is installed (``pip install 'symgrad[jit]'``) and NumPy
    otherwise; ``"numpy"`` and ``"numba"`` force one (``"numba"`` raises ``InvalidArgument``
    where it does not apply).  Both give the same values to a few ulps.

    ``out``: a previous result of the same chain and batch (``wrt=None``) whose memory this call
    writes into and returns, instead of allocating: the caller owns the memory and decides when
    it may be overwritten (fresh pages cost the OS a zeroing pass, about a third of the compiled
    kernel's time on the README's workload).  That previous result's values are overwritten.

    >>> import symgrad
    >>> from symgrad.numeric import backprop, sample
    >>> net = symgrad.chain(2)
    >>> p = sample(net, value={"w1": 1.0, "w2": 1.0, "b1": 0.0, "b2": 0.0, "a0": 0.0, "y": 0.0})
    >>> round(float(backprop(net, p).grads["b2"]), 6)  # σ'(z2) (a2 − y) at z2 = σ(0) = 0.5
    0.14628
    """
    # The sigmoid kernel checks the batched w, b rows for nan/inf as it reads them (one pass
    # fewer over the largest inputs); every other path checks them here.
    defer = isinstance(net, Chain) and not log_space and all(_is_sigmoid(a) for a in net.activations)
    inp = _validate(net, params, defer_wb=defer)
    if wrt is not None:
        wrt = [wrt] if isinstance(wrt, str) else list(wrt)
        for name in wrt:
            if name not in net.parameters:
                raise InvalidArgument("wrt: unknown parameter %r; known: %s" % (name, _known_names(net)))
    if backend not in _BACKENDS:
        raise InvalidArgument("backend=%r: expected one of %s" % (backend, ", ".join(map(repr, _BACKENDS))))
    for arg, val in (("block_size", block_size), ("threads", threads)):
        if val is not None and (isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1):
            raise InvalidArgument("%s=%r: expected a positive int, or None for the default" % (arg, val))
    if isinstance(net, Network):
        if out is not None:
            raise InvalidArgument("out= reuses a chain's gradient memory; dense networks allocate theirs (got out= for %r)" % (net,))
        if backend == "numba":
            raise InvalidArgument("backend='numba' has a compiled kernel for all-sigmoid chains only; use backend='numpy' for %r" % (net,))
        _check_memory("backprop(%r, batch=%r)" % (net, inp.batch), _backprop_bytes(inp, log_space, wrt, 0, 1),
                      "use a smaller batch, or pass wrt= with fewer parameters")
        return _dense_backprop(inp, log_space=log_space, wrt=wrt)
    L, B, dt = net.depth, inp.batch, inp.dtype
    n = 1 if B is None else B
    use_jit = _use_jit(inp, backend, log_space, n)
    block = (JIT_BLOCK if use_jit else DEFAULT_BLOCK) if block_size is None else int(block_size)
    want = set(net.parameters if wrt is None else wrt)
    want_w = [j for j in range(L) if "w%d" % (j + 1) in want]
    # With wrt=None every δ^l is returned (it is ∂C/∂b_l), so the kernels write straight into
    # the outputs.  With wrt, only the rows asked for are kept: memory is O(L·block) per thread.
    want_b = [j for j in range(L) if "b%d" % (j + 1) in want]
    nthreads = max(1, min(threads or min(os.cpu_count() or 1, 8), n))
    _check_memory("backprop(%r, batch=%r)" % (net, B), _backprop_bytes(inp, log_space, wrt, block, nthreads),
                  "use a smaller batch, pass wrt= with fewer parameters, or a smaller block_size")
    if out is not None:
        bufs = out._buffers if isinstance(out, BackpropResult) else None
        if wrt is not None or bufs is None or any(b.shape != (L, n) or b.dtype != dt for b in bufs):
            raise InvalidArgument(
                "out= must be a BackpropResult of backprop on a chain of depth %d with the same batch (%s) and dtype "
                "(%s), computed and reused without wrt=; got %r" % (L, B, dt.name, type(out).__name__ if bufs is None else
                                                                     "buffers of shape %s" % (bufs[0].shape,)))
        gb, gw = bufs
    else:
        gb = np.empty((L, n), dtype=dt) if wrt is None else None
    gb_rows = np.empty((len(want_b), n), dtype=dt) if gb is None and want_b else None
    if out is None:
        gw = np.empty((L, n), dtype=dt) if len(want_w) == L else None
    gw_rows = np.empty((len(want_w), n), dtype=dt) if gw is None and want_w else None
    loss = np.empty(n, dtype=dt)
    blocks = _chain_blocks(B, block, nthreads)
    nthreads = min(nthreads, len(blocks))
    # The in-place sigmoid kernel pays a dozen NumPy calls per layer: for tiny blocks the generic
    # kernel (one Python-float forward loop, vectorised φ' and backward) is faster.
    fast = all(_is_sigmoid(a) for a in net.activations) and (use_jit or max(e - s for s, e in blocks) >= 64)
    if use_jit:
        jk = _jit.kernels()
        jrows = (_jit.typed_rows([np.ascontiguousarray(w) for w in inp.ws]),
                 _jit.typed_rows([np.ascontiguousarray(b) for b in inp.bs]),
                 np.ascontiguousarray(np.broadcast_to(inp.values["a0"], (n,))),
                 np.ascontiguousarray(np.broadcast_to(inp.values["y"], (n,))))
    if inp.deferred and not fast:
        _check_block_finite(inp, 0, n)
    logs = (np.empty((L, n)), np.empty((L, n)), np.empty((L, n)), np.empty((L, n))) if log_space else None

    def run(blk, work):
        s, e = blk
        D = gb[:, s:e] if gb is not None else np.empty((L, e - s), dtype=dt)
        A = gw[:, s:e] if gw is not None else np.empty((L, e - s), dtype=dt)
        try:
            try:
                if fast:
                    try:
                        if use_jit:  # the compiled kernel indexes the full outputs (or the scratch rows)
                            Dk, oD = (gb, s) if gb is not None else (D, 0)
                            Ak, oA = (gw, s) if gw is not None else (A, 0)
                            _jit_block(inp, jk, jrows, s, e, Dk, oD, Ak, oA, loss)
                        else:
                            loss[s:e] = _sigmoid_block(inp, s, e, D, A, work, inp.deferred)
                    except _NonFiniteBlock:
                        _check_block_finite(inp, s, e)  # a nan/inf input: InvalidArgument names it
                        loss[s:e] = _generic_block(inp, s, e, D, A)  # else the overflow error, or the values
                else:
                    loss[s:e] = _generic_block(inp, s, e, D, A)
            except FloatingPointError:
                raise _Rescale() from None
        except _Rescale:
            # A product overflowed or underflowed (an exploding or vanishing gradient, a saturated
            # unit): redo this block only, with every product rescaled; values stay linear.
            if inp.deferred:
                _check_block_finite(inp, s, e)  # a nan/inf input may be what stopped the kernel
            loss[s:e] = _scaled_block(inp, s, e, D, A)
        if gw_rows is not None:
            gw_rows[:, s:e] = A[want_w]
        if gb_rows is not None:
            gb_rows[:, s:e] = D[want_b]
        if logs is not None:
            S, SS, SW, SSW = _log_block(inp, s, e)
            logs[0][:, s:e], logs[1][:, s:e], logs[2][:, s:e], logs[3][:, s:e] = S, SS, SW, SSW

    def part(k):
        # Each thread owns one contiguous run of blocks (so the two threads do not fault in the same
        # huge pages of the fresh outputs) and one set of work rows, reused across them.
        m = max(e - s for s, e in blocks)
        work = tuple(np.empty(m, dtype=dt) for _ in range(4)) if fast and not use_jit else None
        per = -(-len(blocks) // nthreads)
        for blk in blocks[k * per:(k + 1) * per]:
            run(blk, work)

    if nthreads > 1:
        with ThreadPoolExecutor(nthreads) as pool:
            list(pool.map(part, range(nthreads)))
    else:
        part(0)

    # Rows of the (L, n) outputs, or (batch None) their single entries as NumPy scalars.
    rows = (lambda M: list(M[:, 0])) if B is None else (lambda M: list(M))
    wnames = ["w%d" % (j + 1) for j in range(L)]
    bnames = ["b%d" % (j + 1) for j in range(L)]
    grads, log_abs_d, sign_d = {}, ({} if log_space else None), ({} if log_space else None)
    deltas = rows(gb) if gb is not None else None
    if gw is not None:
        grads.update(zip(wnames, rows(gw)))
    elif gw_rows is not None:
        grads.update(zip([wnames[j] for j in want_w], rows(gw_rows)))
    if gb is not None:
        grads.update(zip(bnames, deltas))
    elif gb_rows is not None:
        grads.update(zip([bnames[j] for j in want_b], rows(gb_rows)))
    if log_space:
        for names_, la, sg in ((wnames, logs[2], logs[3]), (bnames, logs[0], logs[1])):
            for n, l_, s_ in zip(names_, rows(la), rows(sg)):
                if n in want:
                    log_abs_d[n], sign_d[n] = l_, s_
    squeeze = (lambda x: x[0]) if B is None else (lambda x: x)
    bufs = (gb, gw) if gb is not None and gw is not None else None
    return BackpropResult(grads, deltas, squeeze(loss), sign_d, log_abs_d, B, _buffers=bufs)


def forward(net, params) -> dict:
    """The forward pass: local name → value (``z1``, ``a1``, …), plus ``loss`` (per sample).

    Holds every layer's values; for deep chains with large batches prefer :func:`backprop`.

    * ``net``: a :class:`~symgrad.symbolic.networks.Chain` or ``Network``;
    * ``params``: its parameter mapping (:mod:`symgrad.numeric`; bad entries raise
      :class:`~symgrad.InvalidArgument` naming them);
    * returns ``z{l}``, ``a{l}``: shape ``(B,)`` / ``()`` for a chain, ``(B, n_l)`` / ``(n_l,)`` for
      a dense network; ``loss``: the cost per sample.  ``z^l = W^l a^{l−1} + b^l``, ``a^l = φ(z^l)``
      (Nielsen, ch. 2, eq. 25).

    >>> import symgrad
    >>> from symgrad.numeric import forward, sample
    >>> net = symgrad.chain(2)
    >>> f = forward(net, sample(net, 3, seed=0))
    >>> sorted(f), f["z1"].shape
    (['a1', 'a2', 'loss', 'z1', 'z2'], (3,))
    """
    inp = _validate(net, params)
    return _forward_locals(inp)


def _forward_locals(inp: _Inputs) -> dict:
    net, L, B = inp.net, inp.net.depth, inp.batch
    out = {}
    if isinstance(net, Chain):
        n = 1 if B is None else B
        Z = np.empty((L, n), dtype=inp.dtype)
        A = np.empty((L, n), dtype=inp.dtype)
        aL, zL = _chain_forward(inp, 0, n, Z=Z, A=A)
        squeeze = (lambda x: x[..., 0][()]) if B is None else (lambda x: x)
        for j in range(L):
            out["z%d" % (j + 1)] = squeeze(Z[j])
            if j + 1 < L:
                out["a%d" % (j + 1)] = squeeze(A[j + 1])
        out["a%d" % L] = squeeze(np.asarray(aL))
        y = np.broadcast_to(inp.block("y", 0, n), (n,))
        out["loss"] = squeeze(np.asarray(_output_delta(net, aL, zL, y)[1]))
        return out
    zs, As = _dense_forward(inp)
    for l in range(1, L + 1):
        out["z%d" % l], out["a%d" % l] = zs[l], As[l]
    out["loss"] = _dense_loss(inp, zs[L], As[L])
    return out


