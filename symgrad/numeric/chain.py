"""Chain kernels: the single-neuron chain's forward and backward passes in blocks, in linear space (with a
rescaled redo where a product leaves the normal range), in log space, and through the compiled kernel."""

from __future__ import annotations

import math

import numpy as np

from symgrad.numeric import logspace as _nl
from symgrad.numeric.logspace import grad_sign, log_abs, log_abs_value, sign_value
from symgrad.numeric import compiled as _jit
from symgrad.errors import InvalidArgument
from symgrad.numeric.inputs import _Inputs, _NonFiniteBlock, _Rescale, _all_finite, _base_shape, _tiny_of
from symgrad.numeric.output import _SIGMOID_SAFE_Z, _is_sigmoid, _log_output, _output_delta, _split_output


# ---------------------------------------------------------------------------------------------
# Chains: blocked kernels
# ---------------------------------------------------------------------------------------------


def _chain_blocks(B: int | None, block: int, nthreads: int = 1):
    """(start, end) pairs of at most ``block`` samples; their number is a multiple of
    ``nthreads`` where the batch allows, and their sizes differ by at most one."""
    n = 1 if B is None else B
    k = -(-n // block)
    if nthreads > 1 and n >= nthreads:
        k = min(n, -(-k // nthreads) * nthreads)
    q, rem = divmod(n, k)
    edges = [i * q + min(i, rem) for i in range(k + 1)]
    return list(zip(edges[:-1], edges[1:]))


def _overflow_error(net, j, s, z, dtype=np.float64):
    z = np.asarray(z)
    i = int(np.argmax(~np.isfinite(z))) if z.ndim else 0
    bad = s + i
    dt = np.dtype(dtype)
    return InvalidArgument(
        "the forward pass overflows %s at layer %d (z%d = w%d·a%d + b%d exceeds %.4g) for batch index %d; "
        "scale the parameters down" % (dt.name, j, j, j, j - 1, j, float(np.finfo(dt).max), bad)
    )


def _affine(a, w, b, net, j, s):
    """z = w·a + b, also where w·a overflows but z does not (|w a| ≤ |z| + |b| < 2·max, so
    halving w and b is enough; both halvings and the final doubling are exact).  Raises the
    overflow error where z itself exceeds the range."""
    with np.errstate(over="raise", invalid="raise"):
        try:
            return a * w + b
        except FloatingPointError:
            pass
        try:
            return 2.0 * ((0.5 * w) * a + 0.5 * b)
        except FloatingPointError:
            with np.errstate(over="ignore", invalid="ignore"):
                z = 2.0 * ((0.5 * w) * a + 0.5 * b)
            raise _overflow_error(net, j, s, z, np.result_type(a, w, b)) from None


def _chain_forward(inp: _Inputs, s, e, Z=None, A=None, D=None):
    """Forward pass of one block: fills Z[j] = z_{j+1}, A[j] = a_j (A[0] = a0), D[j] = φ'(z_{j+1})
    for the arrays given, and returns (a_L, z_L).  Raises InvalidArgument on overflow."""
    net = inp.net
    n = e - s
    alphas = inp.alphas
    if n == 1 and D is None and alphas is None and all(_is_sigmoid(a) for a in net.activations):
        return _sigmoid_forward_scalar(inp, s, Z, A)
    a = np.empty(n, dtype=inp.dtype)
    a[...] = inp.block("a0", s, e)
    prev = a
    zj = None
    with np.errstate(over="raise", invalid="raise"):
        for j, act in enumerate(net.activations):
            if A is not None:
                A[j] = a
            w, b = inp.w(j, s, e), inp.b(j, s, e)
            zj = _affine(a, w, b, net, j + 1, s)
            if Z is not None:
                Z[j] = zj
            try:
                if D is not None:
                    D[j] = act.grad(zj)
                a = act.value(zj)
            except FloatingPointError:
                raise InvalidArgument("the %s kernel overflowed at layer %d (a custom activation?)" % (act.name, j + 1)) from None
            if alphas is not None and alphas[j] is not None:
                try:  # a residual layer: a_j = a_{j−1} + α_j φ(z_j) (over="raise" here)
                    a = prev + alphas[j] * a
                except FloatingPointError:
                    a = _residual_add(prev, alphas[j], a, net, j + 1, s)  # names the layer and the batch index
            prev = a
            # A finite z whose φ(z) or φ'(z) lies beyond the dtype (z**2 at 1e200) is refused by
            # name, not carried on as inf into a nan.
            for what, v in (("φ", a), ("φ'", D[j] if D is not None else None)):
                if v is not None and not _all_finite(v):
                    i = int(np.argmax(~np.isfinite(np.asarray(v)))) if np.ndim(v) else 0
                    raise InvalidArgument(
                        "%s(z%d) of %s overflows %s at layer %d for batch index %d (z%d = %r); scale the parameters down"
                        % (what, j + 1, act.name, np.dtype(inp.dtype).name, j + 1, s + i, j + 1,
                           float(np.reshape(zj, -1)[i if np.ndim(zj) else 0])))
    return a, zj


def _residual_add(prev, alpha, phi, net, j, s):
    """a_j = a_{j−1} + α_j φ(z_j) of a residual layer; InvalidArgument naming the layer and the
    batch index where it exceeds the dtype's range."""
    with np.errstate(over="ignore", invalid="ignore"):
        a = prev + alpha * phi
    if not _all_finite(a):
        i = int(np.argmax(~np.isfinite(np.asarray(a)).reshape(-1))) if np.ndim(a) else 0
        dt = np.result_type(a)
        raise InvalidArgument(
            "the forward pass overflows %s at residual layer %d (a%d = a%d + α·φ(z%d) exceeds %.4g) for batch index %d; "
            "scale the parameters or α down" % (dt.name, j, j, j - 1, j, float(np.finfo(dt).max), s + i))
    return a


def _sigmoid_forward_scalar(inp: _Inputs, s, Z, A):
    """One sample through a sigmoid chain in plain Python floats: a deep chain with batch 1
    (depth 100000) would otherwise pay NumPy's per-call overhead a dozen times per layer."""
    one = lambda v, bat: float(v[s]) if bat else float(v)  # noqa: E731
    ws = [one(v, bt) for v, bt in zip(inp.ws, inp.wb)]
    bs = [one(v, bt) for v, bt in zip(inp.bs, inp.bb)]
    a = one(inp.values["a0"], inp.batched["a0"])
    zs, as_ = [], []
    exp, isfinite = math.exp, math.isfinite
    # float32 chains are computed in float64 here and rounded once at the end: every z must then
    # also fit float32 (a silent cast to ±inf gave −0.0 gradients).
    zmax = float(np.finfo(inp.dtype).max)
    for j in range(len(ws)):
        as_.append(a)
        z = ws[j] * a + bs[j]  # float overflow gives inf here (no exception): checked next
        if not isfinite(z) or abs(z) > zmax:
            z = 2.0 * ((0.5 * ws[j]) * a + 0.5 * bs[j])  # w·a overflowed, z may not (see _affine)
            if not isfinite(z) or abs(z) > zmax:
                raise _overflow_error(inp.net, j + 1, s, np.array([z if abs(z) <= zmax else math.inf]), inp.dtype)
        zs.append(z)
        if z >= 0:
            a = 1.0 / (1.0 + exp(-z))
        else:
            ez = exp(z)
            a = ez / (1.0 + ez)
    if Z is not None:
        Z[:, 0] = zs
    if A is not None:
        A[:, 0] = as_
    dt = inp.dtype
    return np.array([a], dtype=dt), np.array([zs[-1]], dtype=dt)


def _sigmoid_block(inp: _Inputs, s, e, D, A, work, check):
    """The fast path for all-sigmoid chains, in place: D becomes δ (= ∂C/∂b), A becomes ∂C/∂w.

    Per layer, a dozen passes over cache-resident rows, one of them exp:
    z = w a + b;  e = exp(−|z|);  r = 1/(1 + e) = σ(|z|);  t = e r = σ(−|z|);
    a = max(t, copysign(r, z)) = σ(z)  (exact: it selects r or t);  σ'(z) = t r;
    and σ'(z_{j−1}) w_j is formed while w_j is still in cache, so the backward pass is one
    running product.  No value is rounded more often than in the textbook formula, and t r keeps
    full relative precision where (1 − σ) σ (PyTorch's formula) cancels to 0.

    ``check``: the batched w, b rows were not scanned for nan/inf up front (that costs a full read
    of the inputs); instead Σ_j z_j is accumulated, which is non-finite exactly when some z_j is
    (or when it overflows), and :class:`_NonFiniteBlock` sends the block to the exact diagnosis.
    """
    net, L = inp.net, inp.net.depth
    m = e - s
    z, ex, r, acc = (buf[:m] for buf in work)
    # Positional out arguments (not for np.maximum, which deprecates them): NumPy parses them
    # faster than keywords, and these are a dozen calls per layer.
    mul, add, div, exp, cps, mx, absf, neg = (np.multiply, np.add, np.divide, np.exp, np.copysign,
                                              np.maximum, np.absolute, np.negative)
    ws = [inp.w(j, s, e) for j in range(L)]
    bs = [inp.b(j, s, e) for j in range(L)]
    A[0] = inp.block("a0", s, e)
    if check:
        acc.fill(0.0)
    zabs = 0.0
    # under="raise": a product that underflows (σ'(z) w with a subnormal w, say) loses digits that
    # a later huge factor would bring back, so the block is redone rescaled; only exp's underflow
    # is expected (a saturated unit) and is caught by the |z| check below instead.
    with np.errstate(over="raise", invalid="raise", under="raise"):
        for j in range(L):
            w, a, d = ws[j], A[j], D[j]
            try:
                mul(a, w, z)
                add(z, bs[j], z)
                if check:
                    add(acc, z, acc)
            except FloatingPointError:
                raise _NonFiniteBlock(j) from None
            if j:
                mul(D[j - 1], w, D[j - 1])  # c_{j-1} = σ'(z_{j-1}) w_j
            absf(z, ex)
            zabs = max(zabs, ex.max())
            neg(ex, ex)
            if zabs > _SIGMOID_SAFE_Z:
                raise _Rescale()  # a saturated unit: σ or σ' below the smallest normal double
            with np.errstate(under="ignore"):
                exp(ex, ex)
            add(ex, 1.0, r)
            div(1.0, r, r)  # r = σ(|z|)
            mul(ex, r, d)  # t = σ(−|z|)
            cps(r, z, ex)  # ±r
            mx(d, ex, out=A[j + 1] if j + 1 < L else ex)  # a_{j+1} = σ(z); a_L stays in ex
            mul(d, r, d)  # σ'(z) = t r
    if check and not np.isfinite(acc).all():
        raise _NonFiniteBlock(None)
    aL = ex
    y = inp.block("y", s, e)
    dL, loss, cancel = _output_delta(net, aL, z, y)
    # A product that underflows (inexactly) raises too: the block is then redone rescaled.
    with np.errstate(over="raise", invalid="raise", under="raise"):
        d = D[L - 1]
        if cancel:
            d[...] = dL
        else:
            mul(d, dL, d)
        mul(A[L - 1], d, A[L - 1])
        for j in range(L - 2, -1, -1):  # δ_j = c_j δ_{j+1};  ∂C/∂w_j = δ_j a_{j-1}, row by row
            d = D[j]
            mul(d, D[j + 1], d)
            mul(A[j], d, A[j])
    return loss


def _check_block_finite(inp: _Inputs, s, e):
    """The exact check that a fast block deferred: name the first non-finite w or b entry."""
    net = inp.net
    for kind, rows, flags in (("w", inp.ws, inp.wb), ("b", inp.bs, inp.bb)):
        for j, (row, bat) in enumerate(zip(rows, flags)):
            if bat and not np.isfinite(row[s:e]).all():
                i = s + int(np.argmax(~np.isfinite(row[s:e])))
                raise InvalidArgument(
                    "parameter %r (expected shape %s) contains %r at index %s; inputs must be finite"
                    % ("%s%d" % (kind, j + 1), _base_shape(net, kind + "1"), row[i].item(), (i,))
                )


def _generic_block(inp: _Inputs, s, e, D, A):
    """Any activations: forward per layer, φ' vectorised over layers, backward by one reverse
    cumulative product δ_j = Π_{k≥j} c_k with c_j = φ'(z_j) w_{j+1}.  D becomes δ, A becomes ∂C/∂w."""
    net, L = inp.net, inp.net.depth
    n = e - s
    Z = np.empty((L, n), dtype=inp.dtype)
    aL, zL = _chain_forward(inp, s, e, Z=Z, A=A)
    _fill_grads(net, Z, D)
    if _lost_to_underflow(net, Z, D, A, aL, zL):
        raise _Rescale()
    y = inp.block("y", s, e)
    d, loss, cancel = _output_delta(net, aL, zL, y)
    if cancel and np.any(np.abs(d) < _tiny_of(d)):
        raise _Rescale()
    with np.errstate(over="raise", invalid="raise", under="raise"):
        if cancel:
            D[L - 1] = d
        else:
            D[L - 1] *= d
        if L > 1:
            D[: L - 1] *= _w_rows(inp, s, e)
            rev = D[::-1]
            np.multiply.accumulate(rev, axis=0, out=rev)
        A *= D
    return loss


def _lost_to_underflow(net, Z, D, A, aL, zL) -> bool:
    """True where a factor φ'(z_j) or an activation a_j (j ≥ 1) is below the smallest normal
    float64 although its exact value is not 0 (its log is finite): the linear product may then
    be 0 or imprecise where the gradient is representable.  Exact zeros (a dead ReLU) pass."""
    # The dtype's own smallest normal: NumPy compares a float32 array with a Python float in
    # float32 (NEP 50), where float64's 2.2e-308 rounds to 0 and nothing would count as low.
    tiny = _tiny_of(D)
    for act, idx in _groups(net).items():
        rows = idx if len(idx) < len(net.activations) else slice(None)
        dz = D[rows]
        low = np.abs(dz) < tiny
        if low.any() and np.isfinite(act.log_abs_grad(Z[rows][low])).any():
            return True
        nxt = [j for j in (idx if isinstance(rows, list) else range(len(net.activations))) if j + 1 < len(net.activations)]
        if nxt:
            av = A[[j + 1 for j in nxt]]
            low = np.abs(av) < tiny
            if low.any() and np.isfinite(log_abs_value(act, Z[nxt][low])).any():
                return True
    out = net.activations[-1]
    low = np.abs(aL) < tiny
    return bool(low.any() and np.isfinite(log_abs_value(out, np.asarray(zL)[low])).any())


def _scaled_block(inp: _Inputs, s, e, D, A):
    """A chain block with every product carried as m · 2^k (see ``_numeric_logs.split``): no
    partial product overflows or underflows, factors that underflow in linear space come from
    their logs, and each result is rounded once at the end, so a representable gradient comes
    back to a few ulps (an unrepresentable one as ±inf or 0).  D becomes δ, A becomes ∂C/∂w;
    returns the loss."""
    net, L = inp.net, inp.net.depth
    n = e - s
    Z = np.empty((L, n), dtype=np.float64)
    Ap = np.empty((L, n), dtype=np.float64)  # a_{j-1}
    aL, zL = _chain_forward(inp, s, e, Z=Z, A=Ap)
    Z64 = Z
    y = np.broadcast_to(np.asarray(inp.block("y", s, e), dtype=np.float64), (n,))
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        G = np.empty((L, n))
        _fill_grads(net, Z64, G)
        M = np.empty((L, n))
        E = np.empty((L, n))
        AM = np.empty((L, n))
        AE = np.empty((L, n))
        AM[0], AE[0] = _nl.split(Ap[0])
        for act, idx in _groups(net).items():
            rows = np.asarray(idx)
            Zr = Z64[rows]
            M[rows], E[rows] = _nl.split(G[rows], lambda m, Zr=Zr, act=act: act.log_abs_grad(Zr[m]),
                                         lambda m, Zr=Zr, act=act: grad_sign(act, Zr[m]))
            nxt = rows[rows + 1 < L]
            if nxt.size:
                Zn = Z64[nxt]
                AM[nxt + 1], AE[nxt + 1] = _nl.split(Ap[nxt + 1], lambda m, Zn=Zn, act=act: log_abs_value(act, Zn[m]),
                                                     lambda m, Zn=Zn, act=act: sign_value(act, Zn[m]))
        zl, al = np.asarray(zL, dtype=np.float64), np.asarray(aL, dtype=np.float64)
        M[L - 1], E[L - 1] = _split_output(net, al, zl, y, grad=(M[L - 1], E[L - 1]))
        if L > 1:
            Wr = np.asarray(_w_rows(inp, s, e), dtype=np.float64)
            M[: L - 1], E[: L - 1] = _nl.smul((M[: L - 1], E[: L - 1]), _nl.split(Wr))
        PM, PE = _nl.rev_cumprod(M, E)
        D[...] = _nl.value((PM, PE), D.dtype)
        A[...] = _nl.value(_nl.smul((PM, PE), (AM, AE)), A.dtype)
        yb = np.broadcast_to(inp.block("y", s, e), (n,))
        loss = _output_delta(net, aL, zL, yb)[1]
    return loss


def _w_rows(inp: _Inputs, s, e):
    """w_2..w_L for samples s:e as an (L−1, 1) or (L−1, n) array."""
    if inp.wstack is not None:
        return inp.wstack[1:, None]
    n = e - s
    out = np.empty((len(inp.ws) - 1, n), dtype=inp.dtype)
    for j in range(1, len(inp.ws)):
        out[j - 1] = inp.w(j, s, e)
    return out


def _groups(net) -> dict:
    """Activation → the 0-based layers using it (one group for a uniform chain)."""
    acts = net.activations
    first = acts[0]
    if all(a is first for a in acts):
        return {first: list(range(len(acts)))}
    groups: dict = {}
    for j, act in enumerate(acts):
        groups.setdefault(act, []).append(j)
    return groups


def _fill_grads(net, Z, D):
    """D[j] = φ_j'(Z[j]), one call per distinct activation (one call in all for a uniform chain)."""
    for act, idx in _groups(net).items():
        if len(idx) == len(net.activations):
            D[...] = act.grad(Z)
        else:
            D[idx] = act.grad(Z[idx])


def _log_block(inp: _Inputs, s, e):
    """Log space for one block: log|∂C/∂b_j| = log|φ'(z_j)| + Σ_{k>j} (log|w_k| + log|φ'(z_k)|)
    + log|∂C/∂a_L|, as sums (never products), with the sign carried separately."""
    net, L = inp.net, inp.net.depth
    n = e - s
    Z = np.empty((L, n), dtype=np.float64)
    aL, zL = _chain_forward(inp, s, e, Z=Z)
    LG = np.empty((L, n))
    SG = np.empty((L, n))
    LA = np.empty((L, n))  # log|a_{j-1}|
    SA = np.empty((L, n))
    a0 = np.broadcast_to(inp.block("a0", s, e), (n,))
    LA[0], SA[0] = log_abs(a0), np.sign(a0)
    for act, idx in _groups(net).items():
        zi = Z[idx] if len(idx) < L else Z
        LG[idx] = act.log_abs_grad(zi)
        SG[idx] = grad_sign(act, zi)
        if len(idx) == L:
            if L > 1:
                LA[1:] = log_abs_value(act, Z[:-1])
                SA[1:] = sign_value(act, Z[:-1])
            continue
        nxt = [j + 1 for j in idx if j + 1 < L]
        if nxt:
            src = [j for j in idx if j + 1 < L]
            LA[nxt] = log_abs_value(act, Z[src])
            SA[nxt] = sign_value(act, Z[src])
    y = np.broadcast_to(inp.block("y", s, e), (n,))
    LG[L - 1], SG[L - 1] = _log_output(net, aL, zL, y, LG[L - 1], SG[L - 1])
    # Fold log|w_{j+1}| into layer j, then reverse cumulative sums: S_j = Σ_{k≥j}.
    if L > 1:
        Wr = _w_rows(inp, s, e)
        LG[: L - 1] += log_abs(Wr)
        SG[: L - 1] *= np.sign(Wr)
    # log|·| ≤ 710 for finite values, so sums only overflow downward, to the correctly rounded −inf.
    with np.errstate(over="ignore"):
        S = np.cumsum(LG[::-1], axis=0)[::-1]
        SS = np.cumprod(SG[::-1], axis=0)[::-1]
        return S, SS, S + LA, SS * SA


_BACKENDS = ("auto", "numpy", "numba")

#: Samples per block for the compiled kernel: a block's per-layer rows (a, z and the two output
#: rows, 4096 × 8 bytes each) stay in L2, and one compiled call per block costs ~7 µs.
JIT_BLOCK = 4096

#: Where the compiled kernel flags samples for the rescaled redo, runs of this many samples are
#: redone (the NumPy redo pays a fixed cost per call).
JIT_SPLIT = 64

#: ``backend="auto"`` compiles (or loads from numba's cache) only for chains with at least this
#: many layer-samples, so small checks never pay numba's start-up.
JIT_MIN_WORK = 1 << 18


def _use_jit(inp: _Inputs, backend, log_space, n) -> bool:
    net = inp.net
    if backend == "numpy":
        return False
    why = None
    out = net.activations[-1]
    if log_space:
        why = "linear space only (log_space=True runs on NumPy)"
    elif inp.dtype != np.float64:
        why = "float64 only"
    elif inp.batch is None or not (all(inp.wb) and all(inp.bb)):
        why = "batched w and b only (every w_l and b_l of shape (batch,))"
    elif net.loss.domain_open_unit and not _is_sigmoid(out):
        why = "cross_entropy with a sigmoid output only (a %s output runs on NumPy)" % out.name
    if backend == "auto" and (why is not None or n * net.depth < JIT_MIN_WORK or not _jit.available()):
        return False
    if why is None:
        why = _unprintable(net)
    if backend == "auto":
        return why is None
    if why is not None:
        raise InvalidArgument("backend='numba' has a compiled kernel for %s; use backend='numpy' or 'auto'" % why)
    if not _jit.available():
        raise InvalidArgument("backend='numba' needs numba (%s); install it with pip install 'symgrad[jit]', or use backend='numpy'"
                              % _jit.import_error())
    return True


def _unprintable(net) -> str | None:
    """None when every layer's stable φ, φ' prints for the compiled kernel, else why not."""
    from symgrad.numeric import _codegen

    for act in dict.fromkeys(net.activations):
        try:
            _codegen.form_of(act)
        except _codegen._Unprintable as exc:
            return ("activations whose φ and φ' it can print (%s: %s; it runs on NumPy)"
                    % (act.name if len(act.name) <= 40 else act.name[:40] + "…", exc))
    return None


def _jit_kernel(net):
    """The compiled chain kernel for ``net``'s distinct activation forms, and each layer's index
    into them."""
    from symgrad.numeric import _codegen

    forms, kinds = {}, []
    for act in net.activations:
        kinds.append(forms.setdefault(_codegen.form_of(act), len(forms)))
    return _codegen.chain_kernel(tuple(forms)), np.array(kinds, dtype=np.int64)

def _jit_block(inp: _Inputs, jk, rows, s, e, D, oD, A, oA, loss):
    """One block through the compiled kernel, writing D[:, oD:oD+m] (δ), A[:, oA:oA+m] (∂C/∂w)
    and loss[s:e]."""
    kernel, kinds = jk
    WL, BL, a0, y = rows
    net = inp.net
    flags = np.zeros(e - s, dtype=np.bool_)
    status = kernel(WL, BL, kinds, a0, y, s, e, A, oA, D, oD, net.loss.domain_open_unit,
                    _is_sigmoid(net.activations[-1]), loss, flags)
    if status > 0:
        raise _NonFiniteBlock(status - 1)
    if status < 0:
        # a product left the normal float64 range, or a unit saturated, in the flagged samples
        raise _RescaleSamples(flags)


def _scaled_samples(inp: _Inputs, idx, D, A, base, loss, scaled_block=None):
    """The rescaled redo (``scaled_block``: ``_scaled_block``, or the residual chains'
    ``residual.chain_scaled``) of the samples ``idx`` only, gathered into one batch; D, A hold the
    rows of the block that starts at sample ``base``."""
    pick = lambda v, bat: v[idx] if bat else v  # noqa: E731
    sub = _Inputs(inp.net, {k: pick(v, inp.batched[k]) for k, v in inp.values.items()}, inp.batched, len(idx), inp.dtype,
                  ws=[pick(w, bt) for w, bt in zip(inp.ws, inp.wb)], bs=[pick(b, bt) for b, bt in zip(inp.bs, inp.bb)],
                  wb=inp.wb, bb=inp.bb, alphas=inp.alphas, alpha_values=inp.alpha_values)
    L = inp.net.depth
    Ds, As = np.empty((L, len(idx)), dtype=inp.dtype), np.empty((L, len(idx)), dtype=inp.dtype)
    lo = (scaled_block or _scaled_block)(sub, 0, len(idx), Ds, As)
    D[:, idx - base] = Ds
    A[:, idx - base] = As
    loss[idx] = lo


class _RescaleSamples(Exception):
    """The compiled kernel's samples that must be redone rescaled (the others are done)."""

    def __init__(self, flags):
        self.flags = flags


