"""Dense backpropagation with one set of weights shared across a batch, returning reduced outputs.

:func:`symgrad.backprop` treats each batch index as its own network and returns per-sample
gradients (``(B, n_l, n_{l-1})`` for each ``W^l``).  :func:`backprop_shared` is the ordinary
training-time pass instead: one ``W^l`` (n_l × n_{l−1}) and ``b^l`` (n_l,), a batch of inputs
``a0`` (B × n0) and targets ``y`` (B × nL), forward and backward as matrix products
(Nielsen, *Neural Networks and Deep Learning*, ch. 2, eqs. BP1–BP4, in matrix form)::

    z^l = a^{l−1} W^lᵀ + b^l,   a^l = φ_l(z^l)                          (B × n_l)
    δ^L = ∂C/∂z^L  (from :mod:`symgrad.numeric.output`),  δ^l = (δ^{l+1} W^{l+1}) ⊙ φ_l'(z^l)
    ∂C/∂W^l = δ^lᵀ a^{l−1}  (n_l × n_{l−1}),   ∂C/∂b^l = Σ_batch δ^l   (n_l,)

where C is the cost summed over the batch.  It returns the per-layer statistics that a
mean-field check needs (:mod:`symgrad.theory.montecarlo`): ``q^l`` (mean of (z^l)² over batch
and units) and ``‖δ^l‖²`` per sample, and never materialises a ``B × n × n`` array.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from symgrad.errors import InvalidArgument
from symgrad.numeric.inputs import _all_finite, _alpha_values, _alphas_of, _check_memory, _plain_array
from symgrad.numeric.output import _output_delta
from symgrad.numeric import _blas
from symgrad.numeric import _shared_kernels as _sk
from symgrad.symbolic.networks import Network

__all__ = ["SharedBackprop", "backprop_shared"]


@dataclass(frozen=True)
class SharedBackprop:
    """What :func:`backprop_shared` returns (L = depth, B = batch; arrays in the inputs' dtype).

    * ``q``: (L,) — ``q^l`` = mean over the batch and the n_l units of ``(z^l)²``, the
      pre-activations' second moment (units of z², i.e. of the inputs squared);
    * ``delta_sq``: (B, L) — ``‖δ^l‖²`` for each sample (column l−1 is layer l; units of
      (∂C/∂z)²);
    * ``delta_sq_mean``: (L,) — its batch mean;
    * ``grads``: ``{"W1": (n1, n0), "b1": (n1,), ...}`` — ∂C/∂p of the cost summed over the
      batch (empty when ``grads=False``);
    * ``cost``: (B,) per-sample cost, or None when ``delta_out`` replaced the loss;
    * ``batch``: B.
    """

    q: np.ndarray
    delta_sq: np.ndarray
    delta_sq_mean: np.ndarray
    grads: dict
    cost: np.ndarray | None
    batch: int


def _as_float_array(name, v, shape_text):
    arr = _plain_array(name, v)
    if arr.dtype.kind != "f" or arr.dtype.itemsize not in (4, 8):
        raise InvalidArgument("parameter %r has dtype %s; expected float64 (or float32) of shape %s. Integers are not "
                              "converted silently: pass x.astype(float)" % (name, arr.dtype, shape_text))
    return arr


def _validate_shared(net, params, delta_out):
    if not isinstance(net, Network):
        raise InvalidArgument("backprop_shared needs a dense network such as symgrad.network([n0, ..., nL]), not %r" % (net,))
    if not isinstance(params, Mapping):
        raise InvalidArgument("params must be a mapping name → array (a0, y, W1..WL, b1..bL), not %s" % type(params).__name__)
    L, n = net.depth, net.widths
    names = ["a0"] + (["y"] if delta_out is None else []) + list(net.parameters)
    alpha_values = _alpha_values(net, params)  # a residual layer's symbolic α: params[α.name], a float
    allowed = set(names) | {"y"} | set(alpha_values)
    for k in params:
        if k not in allowed:
            raise InvalidArgument("unknown parameter %r for %r; expected exactly: a0, y, W1..W%d, b1..b%d" % (k, net, L, L))
    vals, B = {}, None
    for name in names:
        if name == "a0":
            shape, text = (None, n[0]), "(batch, %d)" % n[0]
        elif name == "y":
            shape, text = (None, n[-1]), "(batch, %d)" % n[-1]
        else:
            shape = net.shape(name)
            text = str(shape)
        if name not in params:
            raise InvalidArgument("missing parameter %r: expected a float array of shape %s" % (name, text))
        arr = _as_float_array(name, params[name], text)
        ok = arr.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, arr.shape))
        if not ok:
            hint = " (the weights are shared: one W for the whole batch, not per sample)" if name[0] in "Wb" and arr.ndim == len(shape) + 1 else ""
            raise InvalidArgument("parameter %r has shape %s; expected %s%s" % (name, arr.shape, text, hint))
        if shape[0] is None:
            if arr.shape[0] < 1:
                raise InvalidArgument("parameter %r has an empty batch; expected %s with batch ≥ 1" % (name, text))
            if B is None:
                B = arr.shape[0]
            elif arr.shape[0] != B:
                raise InvalidArgument("parameter %r has batch size %d but a0 has %d; expected %s" % (name, arr.shape[0], B, text))
        # The weights (n_l × n_{l−1} each: the bulk of the input) are not scanned here; the pass
        # finds a non-finite weight through its own output (see _shared_pass).  Everything else
        # is O(batch · width) and is scanned now.
        if name[0] != "W":
            _require_finite(name, arr, text)
        vals[name] = arr
    if delta_out is not None:
        arr = _as_float_array("delta_out", delta_out, "(%d, %d)" % (B, n[-1]))
        if arr.shape != (B, n[-1]):
            raise InvalidArgument("delta_out has shape %s; expected (batch, nL) = (%d, %d)" % (arr.shape, B, n[-1]))
        if not _all_finite(arr):
            raise InvalidArgument("delta_out contains nan or ±inf; it must be finite")
        vals["delta_out"] = arr
    elif net.loss.domain_open_unit and not (np.all(vals["y"] >= 0) and np.all(vals["y"] <= 1)):
        raise InvalidArgument("parameter 'y' (expected shape (batch, %d)): a %s target must lie in [0, 1]" % (n[-1], net.loss.name))
    if delta_out is not None and net.residual and net.residual[-1] is not None:
        raise InvalidArgument("delta_out: the output layer of %r is residual, so the pass needs ∂C/∂a^L (for the skip), not "
                              "only δ^L = ∂C/∂z^L; make the last layer plain or pass y instead of delta_out" % (net,))
    dtypes = {a.dtype for a in vals.values()}
    dt = np.dtype(np.float32) if dtypes == {np.dtype(np.float32)} else np.dtype(np.float64)
    vals = {k: (v if v.dtype == dt else v.astype(dt)) for k, v in vals.items()}
    vals["alphas"] = _alphas_of(net, alpha_values, dt)
    return vals, B, dt


def _require_finite(name, arr, text):
    """InvalidArgument naming ``name``, the first non-finite entry and its index, if there is one."""
    if not _all_finite(arr):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise InvalidArgument("parameter %r (expected shape %s) contains %r at index %s; inputs must be finite"
                              % (name, text, arr[idx].item(), idx))


def _shape_text(W) -> str:
    return "(%d, %d)" % W.shape


def _bad_forward(Ws, l, dt):
    """Why z^l is not finite: the first W^k (k ≤ l) with a non-finite entry (the inputs a0 and
    b^k were scanned before the pass), else an overflow of the forward pass."""
    for k in range(1, l + 1):
        _require_finite("W%d" % k, Ws[k - 1], _shape_text(Ws[k - 1]))
    return InvalidArgument("the forward pass overflows %s at layer %d (z%d = a%d W%dᵀ + b%d); scale the parameters down"
                           % (dt.name, l, l, l - 1, l, l))


def _check_dead_columns(a, W, l):
    """A column j of a^{l−1} that is zero for every sample multiplies W^l[:, j] by 0 only, so the
    GEMM cannot be relied on to carry a non-finite W^l[i, j] into z^l (IEEE gives 0·∞ = nan, but a
    BLAS may skip zero operands): scan those columns of W^l directly."""
    live = np.any(a, axis=0)
    if not live.all():
        dead = np.flatnonzero(~live)
        cols = W[:, dead]
        if not np.isfinite(cols).all():
            i, c = (int(v) for v in np.argwhere(~np.isfinite(cols))[0])
            idx = (i, int(dead[c]))
            raise InvalidArgument("parameter %r (expected shape %s) contains %r at index %s; inputs must be finite"
                                  % ("W%d" % l, _shape_text(W), W[idx].item(), idx))


def _shared_bytes(net, B, dt, grads) -> int:
    """Bytes allocated: z^l (or φ'(z^l)) and a^l kept for the backward pass (B × n_l each), up to six
    B × max n_l buffers (δ, δW, z, and their products), and (``grads``) one n_l × n_{l−1} gradient
    per layer."""
    n, it = net.widths, np.dtype(dt).itemsize
    acts = 2 * B * sum(n[1:]) * it
    work = 6 * B * max(n) * it
    g = sum(n[l] * n[l - 1] + n[l] for l in range(1, len(n))) * it if grads else 0
    return acts + work + g + B * (net.depth + 1) * 8


def backprop_shared(net, params, *, delta_out=None, grads: bool = True) -> SharedBackprop:
    """Forward and backward pass of a dense network whose weights are shared across a batch.

    * ``net``: ``symgrad.network([n0, ..., nL], activation, loss)``;
    * ``params``: ``a0`` (B, n0) inputs, ``y`` (B, nL) targets, ``W1..WL`` (n_l, n_{l−1}) and
      ``b1..bL`` (n_l,) — one set for the whole batch; float64 or float32 (float32 only if
      every entry is);
    * ``delta_out``: (B, nL), optional — use it as δ^L = ∂C/∂z^L instead of the loss's
      (then ``y`` is not needed and ``cost`` is None); the mean-field convention of a fixed
      random readout (Schoenholz et al. 2017, §5);
    * ``grads``: also form the batch-summed ∂C/∂W^l = δ^lᵀ a^{l−1} and ∂C/∂b^l = Σ_batch δ^l.

    δ^L comes from :func:`symgrad.numeric.output._output_delta`: σ(z^L) − y from the logit for
    a sigmoid output with cross-entropy (Nielsen ch. 3, eq. 66), else φ'(z^L)·∂C/∂a^L.
    Returns a :class:`SharedBackprop`.  The cost C is summed over the batch, so each gradient
    equals the sum over the batch of :func:`symgrad.backprop`'s per-sample gradients.  Speed: each
    layer's elementwise work runs in one compiled loop where numba is installed (float64,
    activations that print; :mod:`symgrad.numeric._shared_kernels`), and the matrix products
    through Intel MKL where the optional ``mkl`` package is (``symgrad[mkl]``;
    :mod:`symgrad.numeric._blas`); the results agree within the rounding of either order.

    Errors: :class:`~symgrad.InvalidArgument` for a network that is not dense, a missing or
    unknown name, a wrong shape (naming the expected one), a non-float dtype, nan or ±inf, a
    batch whose arrays do not fit in memory (estimated before allocating), and a pass whose
    z^l or δ^l leaves the floating-point range (rescale the parameters, or use
    ``symgrad.backprop(..., log_space=True)`` per sample).

    >>> import numpy as np, symgrad
    >>> from symgrad.numeric.shared import backprop_shared
    >>> net = symgrad.network([3, 4, 2], "tanh")
    >>> rng = np.random.default_rng(0)
    >>> p = {"a0": rng.standard_normal((5, 3)), "y": rng.standard_normal((5, 2)),
    ...      "W1": rng.standard_normal((4, 3)), "b1": np.zeros(4), "W2": rng.standard_normal((2, 4)), "b2": np.zeros(2)}
    >>> r = backprop_shared(net, p)
    >>> r.grads["W1"].shape, r.delta_sq.shape, r.q.shape
    ((4, 3), (5, 2), (2,))
    >>> per = symgrad.backprop(net, p).grads["W1"].sum(axis=0)  # per-sample, summed
    >>> bool(np.allclose(r.grads["W1"], per, rtol=1e-12, atol=1e-12))
    True
    """
    vals, B, dt = _validate_shared(net, params, delta_out)
    L = net.depth
    _check_memory("backprop_shared(%r, batch=%d)" % (net, B), _shared_bytes(net, B, dt, grads),
                  "use a smaller batch (the gradients are sums: split the batch and add them)")
    Ws = [vals["W%d" % l] for l in range(1, L + 1)]
    bs = [vals["b%d" % l] for l in range(1, L + 1)]
    return _shared_pass(net, Ws, bs, vals["a0"], vals.get("y"), vals.get("delta_out"), grads, dt, alphas=vals["alphas"])


def _shared_pass(net, Ws, bs, a0, y, delta_out, grads, dt, zblock=None, alphas=None) -> SharedBackprop:
    """The pass itself, on validated arrays of one dtype (``Ws[l−1]`` is W^l).

    The elementwise work of each layer (the bias, φ and φ', the residual sum; δ = φ' ⊙ δW, its
    ‖δ‖² per sample and its batch sum) runs in one compiled loop per layer, generated from the
    activations' printed forms (:mod:`symgrad.numeric._shared_kernels`); where numba is missing,
    the dtype is float32 or an activation does not print, in NumPy (:func:`_numpy_pass`).  Memory
    is allocated once per call, in blocks (so that the operating system maps it in large pages
    instead of faulting in each layer's fresh array), and nothing is kept between calls.  A caller
    that runs many passes within one call (the Monte-Carlo check) may pass ``zblock``, a float array
    of ``dt`` with at least B·Σ_{l≥1} n_l entries, to be overwritten by each pass (it holds z^l on
    the NumPy path, φ'(z^l) on the compiled one).

    The weights are not scanned for nan or ±inf beforehand (that would read all L·n² of them
    once more, a fifth of the pass at width 1000): the pass itself proves them finite.  In
    z^l = a^{l−1} W^lᵀ + b^l, wherever column j of a^{l−1} has a nonzero entry a_sj (finite: the
    layer before passed this test), a non-finite W^l_ij makes the product a_sj·W^l_ij non-finite,
    and IEEE sums and products never turn a non-finite value finite, so z^l_si and Σ(z^l)² are
    not finite; columns of a^{l−1} that are zero for the whole batch are scanned directly
    (:func:`_check_dead_columns`, O(B·n) to find them).  Only when Σ(z^l)² is not finite are the
    weights scanned, to name the bad entry (:func:`_bad_forward`).
    """
    if alphas is None and net.is_residual:
        alphas = _alphas_of(net, {}, np.dtype(dt))  # numeric α only (a symbolic one comes from params)
    kern = _sk.kernels(net, dt)
    if kern is None:
        return _numpy_pass(net, Ws, bs, a0, y, delta_out, grads, dt, zblock, alphas)
    return _compiled_pass(kern, net, Ws, bs, a0, y, delta_out, grads, dt, zblock, alphas)


def _z_moment(z, Ws, l, dt, ss=None) -> float:
    """q^l = mean of (z^l)², after proving z^l finite (:func:`_bad_forward` names why it is not);
    ``ss``: Σ(z^l)² where the caller has it.

    One pass: the sum of squares is finite iff every z is finite, unless the squares overflow,
    which the exact check tells apart (then the sum is taken of z/max|z|, rescaled)."""
    if ss is None:
        ss = np.vdot(z, z)
    if not np.isfinite(ss):
        if not np.isfinite(z).all():
            raise _bad_forward(Ws, l, dt)
        m = np.max(np.abs(z))
        ss = m * m * np.vdot(z / m, z / m)
    return ss / z.size


def _residual_overflow(a, l, dt):
    if not np.isfinite(np.vdot(a, a)) and not np.isfinite(a).all():
        raise InvalidArgument("the forward pass overflows %s at residual layer %d (a%d = a%d + α·φ(z%d)); scale the "
                              "parameters or α down" % (dt.name, l, l, l - 1, l))


def _delta_norms(d, l, dsq_row, dt, computed):
    """‖δ^l‖² per sample into ``dsq_row`` (unless ``computed``), with the diagnosis of a δ^l, or its
    squared norm, that leaves the range of ``dt``."""
    if not computed:
        np.einsum("ij,ij->i", d, d, out=dsq_row)
    if not np.isfinite(dsq_row).all():
        if not np.isfinite(d).all():
            raise InvalidArgument("δ%d leaves the %s range (an exploding gradient); use symgrad.backprop(..., log_space=True) "
                                  "per sample, or scale the parameters" % (l, dt.name))
        raise InvalidArgument("‖δ%d‖² overflows %s (an exploding gradient); scale the parameters" % (l, dt.name))


def _batch_sums_bounded(dsum, a_col_max, B, dt) -> bool:
    """True when neither ∂C/∂W^l = δᵀa nor ∂C/∂b^l = Σ_s δ_s can overflow, from Σ_s ‖δ_s‖² (``dsum``,
    as the compiled step summed it) and max_j ‖a_:j‖² (``a_col_max``; None: unknown), reading no
    array: the bound argued in :func:`_sum_cannot_overflow`, which computes its two sums and calls
    this.  The bias needs no test of its own: by
    Cauchy–Schwarz |Σ_s δ_sj| ≤ √B·√dsum, below the largest double for any finite dsum and any
    batch under 2^1000."""
    if a_col_max is None:
        return False
    w = math.sqrt(dsum) * math.sqrt(a_col_max)
    return math.isfinite(w) and 2.0 * (1.0 + gamma(B, dt)) * w < float(np.finfo(dt).max)


def _check_grads(d, a, dsq_row, gw, gb, l, dt, a_col_max=None):
    if not (_sum_cannot_overflow(d, a, dsq_row, dt, a_col_max) or _all_finite(gw)) or not np.isfinite(gb).all():
        raise InvalidArgument("a batch-summed gradient overflows %s at layer %d; scale the parameters or split the batch"
                              % (dt.name, l))


def _compiled_pass(kern, net, Ws, bs, a0, y, delta_out, grads, dt, zblock, alphas) -> SharedBackprop:
    """:func:`_shared_pass` with the compiled steps ``kern`` (:func:`symgrad.numeric._shared_kernels.kernels`).

    Blocks: P^l = φ'(z^l) for every layer (in ``zblock``: φ' is evaluated once, with φ, and read
    again by the backward step); a^l for every layer when ``grads`` (∂C/∂W^{l+1} reads it), else two
    alternating buffers; z^l in one scratch buffer (the GEMM's output, finished in place by the
    compiled step); δ in one buffer and δW in two (g^l = ∂C/∂a^l of a residual layer is the
    previous δW).  No compiled loop is handed two views of one buffer.  The GEMMs go through
    MKL's dgemm on the buffers' addresses (:func:`symgrad.numeric._blas.gemm`) where the optional
    ``mkl`` package is installed, else :func:`symgrad.numeric._blas.matmul`.

    Between two GEMMs the layer loop makes no NumPy call unless a layer needs a diagnosis: every
    view and address is made before the loop, and the compiled steps return the sums the checks
    need.  A NumPy call there took 40 µs against 5 µs in a loop of its own (the GEMM evicts its code
    and data from the caches): at width 1000, depth 100 that was 4% of the pass."""
    L, B = net.depth, a0.shape[0]
    n = net.widths
    res = [alphas is not None and alphas[l] is not None for l in range(L)]
    offs = np.concatenate([[0], np.cumsum([B * w for w in n[1:]])]).astype(np.int64)
    wide, act = B * max(n), int(offs[-1])
    # the working memory, internal to the pass, in one allocation: after the pass frees it, malloc
    # hands the same mapped pages to the next call (up to glibc's 32 MiB mmap threshold), where
    # several blocks of a few MiB coalesce on the heap's top, are returned to the system and fault
    # in afresh (width 256, depth 10, batch 512: 3561 page faults per call before, about 3.5 ms)
    cut = [0] if zblock is not None else [act]  # zblock, ablock or abufs, zbuf, ubufs, dbuf
    cut += [act] if grads else [wide, wide]
    cut += [wide] * 4
    work = np.empty(sum(cut), dtype=dt)
    parts = np.split(work, np.cumsum(cut)[:-1])
    if zblock is None:
        zblock = parts[0]
    ablock = parts[1] if grads else None
    abufs = None if grads else parts[1:3]
    zbuf, ubufs, dbuf = parts[-4], parts[-3:-1], parts[-1]
    zsq, asq = np.empty(max(n), dtype=dt), np.empty(max(n), dtype=dt)  # the step's column sums of squares
    a0 = np.ascontiguousarray(a0)
    # MKL on raw addresses where every operand is a C-contiguous float64 array (the weights as
    # validated; the buffers above are), else _blas.matmul on the views
    f = _blas.dgemm() if dt == np.float64 and zblock.flags.c_contiguous and all(W.flags.c_contiguous for W in Ws) else None
    NT, T = _blas.NO_TRANS, _blas.TRANS
    ptr = (lambda x: x.ctypes.data) if f else (lambda x: 0)
    pW = [ptr(W) for W in Ws]
    # the views of every layer, and their addresses
    zv = [zbuf[:B * n[l]].reshape(B, n[l]) for l in range(L + 1)]
    Pv = [None] + [zblock[offs[l - 1]:offs[l]].reshape(B, n[l]) for l in range(1, L + 1)]
    nv = [a0] + [(ablock[offs[l - 1]:offs[l]] if grads else abufs[l % 2][:B * n[l]]).reshape(B, n[l]) for l in range(1, L + 1)]
    pn = [ptr(v) for v in nv]
    bcs = [np.ascontiguousarray(b) for b in bs]
    alph = [float(alphas[l]) if res[l] else 1.0 for l in range(L)]  # c_l: α_l, or 1 for a plain layer
    pz = ptr(zbuf)
    zsqv, asqv = [zsq[:m] for m in n], [asq[:m] for m in n]
    amax = [None] * (L + 1)  # max_j Σ_s (a^l_sj)², for the overflow bound of ∂C/∂W^{l+1}
    Ps, As = [None] * (L + 1), [None] * (L + 1)
    As[0] = a = a0
    q = np.empty(L, dtype=dt)
    acts = net.activations
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        zeros = B  # a0: look for dead columns
        for l in range(1, L + 1):
            m, k = n[l], n[l - 1]
            if zeros >= B:  # fewer than B zeros in a^{l−1}: no column of it is zero for the whole batch
                _check_dead_columns(a, Ws[l - 1], l)
            z = zv[l]
            if f:
                _blas.gemm(f, NT, T, B, m, k, pn[l - 1], k, pW[l - 1], k, pz)
            else:
                _blas.matmul(a, Ws[l - 1].T, z)
            if l == L and delta_out is not None and not res[l - 1]:
                z += bs[l - 1]  # δ^L is given: neither φ(z^L) nor φ'(z^L) is needed
                q[l - 1] = _z_moment(z, Ws, l, dt)
                break
            P, nxt = Pv[l], nv[l]
            keep = l == L  # z^L is read again by the loss; z^l (l < L) is not written back
            if res[l - 1]:
                bad, zeros, ss, am = kern.res[l - 1](z, bcs[l - 1], a, alph[l - 1], nxt, P, zsqv[l], asqv[l], keep)
            else:
                bad, zeros, ss, am = kern.plain[l - 1](z, bcs[l - 1], nxt, P, zsqv[l], asqv[l], keep)
            finite = math.isfinite(ss)
            if (bad or not finite) and not keep:
                z += bs[l - 1]  # z^l itself, for the diagnosis or the NumPy redo below
            q[l - 1] = ss / (B * m) if finite else _z_moment(z, Ws, l, dt, ss)
            amax[l] = am  # a^l finite where bad is 0 (else None below), so am is a maximum of sums of squares
            # A φ or φ' that is not finite at a finite z (a custom activation whose printed form
            # overflows or cancels where its exact value does not): this layer again in NumPy,
            # whose kernels fall back to the exact value there (Activation.value, .grad).
            if bad:
                zeros, amax[l] = B, None
                v, dv = acts[l - 1].value(z), acts[l - 1].grad(z)
                if res[l - 1]:
                    np.add(a, alphas[l - 1] * v, out=nxt)
                    _residual_overflow(nxt, l, dt)
                else:
                    nxt[...] = v
                P[...] = dv
            a, Ps[l] = nxt, P
            if grads or l == L:
                As[l] = a
        zL = z
        g = None
        if delta_out is not None:
            d, cost = delta_out, None
        else:
            dd, per, cancels = _output_delta(net, As[L], zL, y)
            d = np.asarray(dd if cancels else Ps[L] * dd, dtype=dt)  # P^L = φ'(z^L)
            cost = np.sum(per, axis=-1)
            if res[L - 1]:
                g = np.ascontiguousarray(dd, dtype=dt)  # ∂C/∂a^L = a^L − y
                d = d * alphas[L - 1]  # δ^L = (φ'(z^L)·g^L)·α_L, as the NumPy path
        d = np.ascontiguousarray(d)
        dsq = np.empty((L, B), dtype=dt)
        # the gradients, one array each (the caller keeps them: a view into a shared block would keep
        # every layer's alive for the one kept; malloc recycles them between calls all the same,
        # no page faults either way at width 256, depth 10, batch 512)
        gws = [None] + [np.empty((n[l], n[l - 1]), dtype=dt) for l in range(1, L + 1)] if grads else None
        pg = [ptr(w) for w in gws[1:]] if grads else None
        gbv = [np.empty(n[l], dtype=dt) for l in range(1, L)]  # Σ_batch δ^l, l < L, from the compiled steps
        uv = [[ubufs[i][:B * n[l]].reshape(B, n[l]) for l in range(L + 1)] for i in range(2)]
        uflat = [[ubufs[i][:B * n[l]] for l in range(L + 1)] for i in range(2)]
        pu = [ptr(ubufs[0]), ptr(ubufs[1])]
        dv_, pd = [dbuf[:B * n[l]].reshape(B, n[l]) for l in range(L + 1)], ptr(dbuf)
        dflat = [dbuf[:B * n[l]] for l in range(L + 1)]
        gflat = None if g is None else g.reshape(-1)  # g^L = ∂C/∂a^L of a residual output layer
        Pflat = [None] + [Ps[l].reshape(-1) for l in range(1, L)]  # P^l, l < L: read by the backward steps
        pa_ = [ptr(x) for x in As[:L]] if grads else None
        out = {}
        pdl = ptr(d)  # the address of δ^l
        dsum = None  # Σ_s ‖δ^l_s‖², from the compiled step (None: the output layer's δ^L)
        for l in range(L, 0, -1):
            if dsum is None:
                _delta_norms(d, l, dsq[l - 1], dt, False)
            elif not math.isfinite(dsum):
                _delta_norms(d, l, dsq[l - 1], dt, True)  # names a δ^l or ‖δ^l‖² out of range
            if grads:
                gw = gws[l]
                if f:
                    _blas.gemm(f, T, NT, n[l], n[l - 1], B, pdl, n[l], pa_[l - 1], n[l - 1], pg[l - 1])
                else:
                    _blas.matmul(d.T, As[l - 1], gw)
                gb = d.sum(axis=0) if dsum is None else gbv[l - 1]
                if dsum is None or not _batch_sums_bounded(dsum, amax[l - 1], B, dt):
                    _check_grads(d, As[l - 1], dsq[l - 1], gw, gb, l, dt, amax[l - 1])
                out["W%d" % l], out["b%d" % l] = gw, gb
            if l > 1:
                m = n[l - 1]
                u = uv[l % 2][l - 1]
                if f:
                    _blas.gemm(f, NT, NT, B, m, n[l], pdl, n[l], pW[l - 1], m, pu[l % 2])
                else:
                    _blas.matmul(d, Ws[l - 1], u)
                d, pdl = dv_[l - 1], pd
                uf = uflat[l % 2][l - 1]
                c = alph[l - 2]  # δ^{l−1} = (φ'(z^{l−1}) ⊙ g^{l−1})·c, c = α_{l−1} or 1
                if res[l - 1]:  # g^{l−1} = δ^l W^l + g^l, in place in u
                    dsum = kern.bwd_res(uf, gflat, 1.0, Pflat[l - 1], c, dflat[l - 1], m, dsq[l - 2], gbv[l - 2], grads)
                else:  # g^{l−1} = δ^l W^l
                    dsum = kern.bwd_plain(uf, Pflat[l - 1], c, dflat[l - 1], m, dsq[l - 2], gbv[l - 2], grads)
                g, gflat = u, uf
    dsq = np.ascontiguousarray(dsq.T)
    grads_out = {k: out[k] for k in net.parameters if k in out}
    return SharedBackprop(q, dsq, dsq.mean(axis=0), grads_out, cost, B)


def _numpy_pass(net, Ws, bs, a0, y, delta_out, grads, dt, zblock, alphas) -> SharedBackprop:
    """:func:`_shared_pass` in NumPy: every z^l in one block (``zblock``), δ alternating between two
    buffers that the GEMM writes into."""
    L, B = net.depth, a0.shape[0]
    n = net.widths
    acts = net.activations
    offs = np.concatenate([[0], np.cumsum([B * w for w in n[1:]])])
    if zblock is None:
        zblock = np.empty(int(offs[-1]), dtype=dt)
    zs, As = [None] * (L + 1), [None] * (L + 1)
    As[0] = a0
    q = np.empty(L, dtype=dt)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        a = a0
        for l in range(1, L + 1):
            W = Ws[l - 1]
            _check_dead_columns(a, W, l)
            z = zblock[offs[l - 1]:offs[l]].reshape(B, n[l])
            np.matmul(a, W.T, out=z)
            z += bs[l - 1]
            q[l - 1] = _z_moment(z, Ws, l, dt)
            zs[l] = z
            if l < L or delta_out is None:  # a^L is needed only for the loss
                prev = a
                a = acts[l - 1].value(z)
                if alphas is not None and alphas[l - 1] is not None:  # a residual layer: a^l = a^{l−1} + α_l φ(z^l)
                    a = prev + alphas[l - 1] * a  # new arrays: φ(z) may be z itself (identity)
                    _residual_overflow(a, l, dt)
                if grads or l == L:  # a^l is needed again only for ∂C/∂W^{l+1} (and a^L for the cost)
                    As[l] = a
        if delta_out is not None:
            d, cost = delta_out, None
        else:
            dd, per, cancels = _output_delta(net, As[L], zs[L], y)
            d = np.asarray(dd if cancels else acts[-1].grad(zs[L]) * dd, dtype=dt)
            cost = np.sum(per, axis=-1)
        # Residual layers also carry g^l = ∂C/∂a^l (rows of B): g^{l−1} = δ^l W^l + g^l for a
        # residual layer l, and δ^l = α_l φ'(z^l) ⊙ g^l (numeric/residual.py's module docstring).
        g = None
        if alphas is not None and alphas[L - 1] is not None:
            g = np.asarray(dd, dtype=dt)  # ∂C/∂a^L = a^L − y
            d = d * alphas[L - 1]
        dsq = np.empty((L, B), dtype=dt)
        bufs = [np.empty(B * max(n), dtype=dt) for _ in range(2)] if L > 1 else []
        out = {}
        for l in range(L, 0, -1):
            _delta_norms(d, l, dsq[l - 1], dt, False)
            if grads:
                gw, gb = d.T @ As[l - 1], d.sum(axis=0)
                _check_grads(d, As[l - 1], dsq[l - 1], gw, gb, l, dt)
                out["W%d" % l], out["b%d" % l] = gw, gb
            if l > 1 and alphas is not None:
                nxt = bufs[l % 2][:B * n[l - 1]].reshape(B, n[l - 1])
                np.matmul(d, Ws[l - 1], out=nxt)
                if alphas[l - 1] is not None:
                    nxt += g  # g^{l−1} = δ^l W^l + g^l
                g = nxt
                d = acts[l - 2].grad(zs[l - 1]) * g
                if alphas[l - 2] is not None:
                    d *= alphas[l - 2]
            elif l > 1:
                g = acts[l - 2].grad(zs[l - 1])
                nxt = bufs[l % 2][:B * n[l - 1]].reshape(B, n[l - 1])
                np.matmul(d, Ws[l - 1], out=nxt)
                nxt *= g
                d = nxt
            zs[l] = As[l] = None  # release this layer's activations as soon as they are used
    dsq = np.ascontiguousarray(dsq.T)
    grads_out = {k: out[k] for k in net.parameters if k in out}
    return SharedBackprop(q, dsq, dsq.mean(axis=0), grads_out, cost, B)


def _sum_cannot_overflow(d, a, dsq_rows, dt, a_col_max=None) -> bool:
    """True when no entry of δᵀa can overflow, so that it need not be scanned: by Cauchy–Schwarz
    |Σ_s δ_si a_sj| ≤ ‖δ_:i‖·‖a_:j‖ ≤ √(Σ_s ‖δ_s‖²)·max_j ‖a_:j‖, and a computed sum of B products
    stays within (1 + γ_B) of the sum of their magnitudes (Higham §3.1), each partial sum too;
    a factor 2 covers the rounding of the norms themselves.  O(B·n), against O(n²) for the scan;
    O(1) where ``a_col_max`` (max_j ‖a_:j‖², from the compiled forward step) is given."""
    with np.errstate(over="ignore", invalid="ignore"):
        if a_col_max is None:
            a_col_max = float(np.max(np.einsum("ij,ij->j", a, a)))
        dsum = float(np.sum(dsq_rows))
    return _batch_sums_bounded(dsum, a_col_max, a.shape[0], dt)


#: Unit roundoff of float64 and float32, for the error bounds in the tests (γ_n = n·u/(1 − n·u)).
UNIT_ROUNDOFF = {np.dtype(np.float64): 2.0 ** -53, np.dtype(np.float32): 2.0 ** -24}


def gamma(n: int, dtype=np.float64) -> float:
    """Higham's γ_n = n·u/(1 − n·u): the relative error bound of an n-term sum or dot product
    (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., §3.1), u the unit roundoff.

    >>> gamma(10) < 1.2e-15
    True
    """
    u = UNIT_ROUNDOFF[np.dtype(dtype)]
    if n * u >= 1:
        return math.inf
    return n * u / (1 - n * u)
