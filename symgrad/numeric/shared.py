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
from symgrad.numeric.inputs import _all_finite, _alpha_values, _alphas_of, _check_memory
from symgrad.numeric.output import _output_delta
from symgrad.numeric import residual as _res
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
    arr = v if isinstance(v, np.ndarray) else np.asarray(v)
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
    """Bytes allocated: z^l and a^l kept for the backward pass (B × n_l each), two δ buffers and
    their products, and (``grads``) one n_l × n_{l−1} gradient per layer."""
    n, it = net.widths, np.dtype(dt).itemsize
    acts = 2 * B * sum(n[1:]) * it
    work = 4 * B * max(n) * it
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
    equals the sum over the batch of :func:`symgrad.backprop`'s per-sample gradients.

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

    Memory is allocated once per call: every z^l lives in one block (so that the operating
    system maps it in large pages instead of faulting in each layer's fresh array), and δ
    alternates between two buffers that the GEMM writes into; nothing is kept between calls.  A
    caller that runs many passes within one call (the Monte-Carlo check) may pass ``zblock``, a
    float array of ``dt`` with at least B·Σ_{l≥1} n_l entries, to be overwritten by each pass.

    The weights are not scanned for nan or ±inf beforehand (that would read all L·n² of them
    once more, a fifth of the pass at width 1000): the pass itself proves them finite.  In
    z^l = a^{l−1} W^lᵀ + b^l, wherever column j of a^{l−1} has a nonzero entry a_sj (finite: the
    layer before passed this test), a non-finite W^l_ij makes the product a_sj·W^l_ij non-finite,
    and IEEE sums and products never turn a non-finite value finite, so z^l_si and Σ(z^l)² are
    not finite; columns of a^{l−1} that are zero for the whole batch are scanned directly
    (:func:`_check_dead_columns`, O(B·n) to find them).  Only when Σ(z^l)² is not finite are the
    weights scanned, to name the bad entry (:func:`_bad_forward`).
    """
    L, B = net.depth, a0.shape[0]
    n = net.widths
    acts = net.activations
    if alphas is None and net.is_residual:
        alphas = _alphas_of(net, {}, np.dtype(dt))  # numeric α only (a symbolic one comes from params)
    # Residual networks: φ and φ' of each layer in one compiled pass from the activation's printed
    # form (numeric/residual.py), P^l = c_l φ'(z^l) kept for the backward step; None: NumPy.
    fused = _res.shared_kernels(net, dt) if alphas is not None else None
    Ps = [None] * (L + 1)
    offs = np.concatenate([[0], np.cumsum([B * w for w in n[1:]])])
    if zblock is None:
        zblock = np.empty(int(offs[-1]), dtype=dt)
    if fused is not None:
        # a^l, P^l = c_l φ'(z^l) and δ^l in one block each, as z^l.  (No compiled loop writes an array
        # it reads: P^l over z^l saved a block, but LLVM's alias check then takes its scalar path,
        # 0.052 s against 0.039 s.)
        ablock, pblock, dblock = (np.empty(int(offs[-1]), dtype=dt) for _ in range(3))
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
            # One pass: the sum of squares is finite iff every z is finite (unless the squares
            # overflow, which the exact check below tells apart).
            ss = np.vdot(z, z)
            if not np.isfinite(ss):
                if not np.isfinite(z).all():
                    raise _bad_forward(Ws, l, dt)
                m = np.max(np.abs(z))
                ss = m * m * np.vdot(z / m, z / m)
            q[l - 1] = ss / z.size
            zs[l] = z
            if fused is not None:
                prev, res_l = a, alphas[l - 1] is not None
                a, Ps[l] = ablock[offs[l - 1]:offs[l]].reshape(B, n[l]), pblock[offs[l - 1]:offs[l]].reshape(B, n[l])
                # a plain layer reads no a^{l−1} (r = 0; its width may differ): z stands in, finite, times 0
                skip = np.ascontiguousarray(prev).reshape(-1) if res_l else z.reshape(-1)
                fused[0][l - 1](z.reshape(-1), skip, float(alphas[l - 1]) if res_l else 1.0, 1.0 if res_l else 0.0,
                                a.reshape(-1), Ps[l].reshape(-1))
                if res_l and not np.isfinite(np.vdot(a, a)) and not np.isfinite(a).all():
                    raise InvalidArgument("the forward pass overflows %s at residual layer %d (a%d = a%d + α·φ(z%d)); scale the "
                                          "parameters or α down" % (dt.name, l, l, l - 1, l))
                if grads or l == L:
                    As[l] = a
            elif l < L or delta_out is None:  # a^L is needed only for the loss
                prev = a
                a = acts[l - 1].value(z)
                if alphas is not None and alphas[l - 1] is not None:  # a residual layer: a^l = a^{l−1} + α_l φ(z^l)
                    a = prev + alphas[l - 1] * a  # new arrays: φ(z) may be z itself (identity)
                    if not np.isfinite(np.vdot(a, a)) and not np.isfinite(a).all():
                        raise InvalidArgument("the forward pass overflows %s at residual layer %d (a%d = a%d + α·φ(z%d)); scale the "
                                              "parameters or α down" % (dt.name, l, l, l - 1, l))
                if grads or l == L:  # a^l is needed again only for ∂C/∂W^{l+1} (and a^L for the cost)
                    As[l] = a
        if delta_out is not None:
            d, cost = delta_out, None
        else:
            dd, per, cancels = _output_delta(net, As[L], zs[L], y)
            if fused is not None:  # P^L = c_L φ'(z^L), from the forward
                d = np.asarray(dd if cancels else Ps[L] * dd, dtype=dt)
            else:
                d = np.asarray(dd if cancels else acts[-1].grad(zs[L]) * dd, dtype=dt)
            cost = np.sum(per, axis=-1)
        # Residual layers also carry g^l = ∂C/∂a^l (rows of B): g^{l−1} = δ^l W^l + g^l for a
        # residual layer l, and δ^l = α_l φ'(z^l) ⊙ g^l (numeric/residual.py's module docstring).
        g = None
        if alphas is not None and alphas[L - 1] is not None:
            g = np.asarray(dd, dtype=dt)  # ∂C/∂a^L = a^L − y
            if fused is None:
                d = d * alphas[L - 1]
        dsq = np.empty((L, B), dtype=dt)
        bufs = [np.empty(B * max(n), dtype=dt) for _ in range(2)] if L > 1 else []
        out = {}
        pre_gb = None  # the compiled backward step's Σ_batch δ^l (it wrote ‖δ^l‖² into dsq already)
        for l in range(L, 0, -1):
            if pre_gb is None:
                np.einsum("ij,ij->i", d, d, out=dsq[l - 1])
            if not np.isfinite(dsq[l - 1]).all():
                if not np.isfinite(d).all():
                    raise InvalidArgument("δ%d leaves the %s range (an exploding gradient); use symgrad.backprop(..., log_space=True) "
                                          "per sample, or scale the parameters" % (l, dt.name))
                raise InvalidArgument("‖δ%d‖² overflows %s (an exploding gradient); scale the parameters" % (l, dt.name))
            if grads:
                gw, gb = d.T @ As[l - 1], (d.sum(axis=0) if pre_gb is None else pre_gb)
                if not (_sum_cannot_overflow(d, As[l - 1], dsq[l - 1], dt) or _all_finite(gw)) or not np.isfinite(gb).all():
                    raise InvalidArgument("a batch-summed gradient overflows %s at layer %d; scale the parameters or split the batch"
                                          % (dt.name, l))
                out["W%d" % l], out["b%d" % l] = gw, gb
            if l > 1 and fused is not None:
                nxt = bufs[l % 2][:B * n[l - 1]].reshape(B, n[l - 1])
                np.matmul(d, Ws[l - 1], out=nxt)
                res_l = alphas[l - 1] is not None
                d = dblock[offs[l - 2]:offs[l - 1]].reshape(B, n[l - 1])
                gin = np.ascontiguousarray(g).reshape(-1) if res_l else nxt.reshape(-1)
                pre_gb = np.empty(n[l - 1], dtype=dt)
                # g^{l−1}, δ^{l−1}, its ‖δ^{l−1}‖² per sample and its batch sum, in one pass
                fused[1](nxt.reshape(-1), gin, 1.0 if res_l else 0.0, Ps[l - 1].reshape(-1), d.reshape(-1), n[l - 1],
                         dsq[l - 2], pre_gb)
                g = nxt
                Ps[l - 1] = None
            elif l > 1 and alphas is not None:
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


def _sum_cannot_overflow(d, a, dsq_rows, dt) -> bool:
    """True when no entry of δᵀa can overflow, so that it need not be scanned: by Cauchy–Schwarz
    |Σ_s δ_si a_sj| ≤ ‖δ_:i‖·‖a_:j‖ ≤ √(Σ_s ‖δ_s‖²)·max_j ‖a_:j‖, and a computed sum of B products
    stays within (1 + γ_B) of the sum of their magnitudes (Higham §3.1), each partial sum too;
    a factor 2 covers the rounding of the norms themselves.  O(B·n), against O(n²) for the scan."""
    with np.errstate(over="ignore", invalid="ignore"):
        bound = math.sqrt(float(np.sum(dsq_rows))) * math.sqrt(float(np.max(np.einsum("ij,ij->j", a, a))))
    return math.isfinite(bound) and 2.0 * (1.0 + gamma(a.shape[0], dt)) * bound < float(np.finfo(dt).max)


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
