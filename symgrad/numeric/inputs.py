"""Parameter validation and memory estimates: nothing is computed on garbage (see :mod:`symgrad.numeric`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from symgrad.numeric import logspace as _nl
from symgrad.errors import InvalidArgument
from symgrad.symbolic.networks import Chain, Network


class _NonFiniteBlock(Exception):
    """A block met a non-finite z: a deferred input check (or an overflow) must explain it."""


class _Rescale(Exception):
    """A block's linear products left the float64 range (or a factor underflowed): it is redone
    by :func:`_scaled_block`."""


def _tiny_of(x) -> float:
    """The smallest normal number of ``x``'s dtype (float32's 1.2e-38, else float64's)."""
    return float(np.finfo(np.float32).tiny) if np.result_type(x) == np.float32 else _nl.TINY


#: work rows in L2, but each layer costs ~15 NumPy calls whose Python part holds the GIL, and
#: with two threads that serialised overhead outweighs the cache misses.
DEFAULT_BLOCK = 32768


# ---------------------------------------------------------------------------------------------
# Memory: estimated before allocating
# ---------------------------------------------------------------------------------------------

#: A request is refused when its estimate exceeds this fraction of the memory available now.
MEMORY_FRACTION = 0.8


def _available_memory() -> int | None:
    """Bytes available to this process now: MemAvailable from /proc/meminfo (Linux), else the
    available (or, failing that, total) physical pages; None where neither is known."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
        try:
            return int(os.sysconf(pages)) * int(os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            continue
    return None


def _gib(nbytes) -> str:
    return "%.3g GiB" % (nbytes / 2**30) if nbytes >= 2**28 else "%.3g MiB" % (nbytes / 2**20)


def _check_memory(what: str, nbytes: int, fix: str) -> None:
    """Refuse (InvalidArgument) a computation whose estimated memory cannot fit, before any of
    it is allocated: a MemoryError (or the OOM killer) halfway through helps nobody."""
    avail = _available_memory()
    if avail is None:
        return
    limit = int(MEMORY_FRACTION * avail)
    if nbytes > limit:
        raise InvalidArgument(
            "%s needs about %s of memory, but %s is available (%d%% of it may be used); %s"
            % (what, _gib(nbytes), _gib(avail), round(100 * MEMORY_FRACTION), fix)
        )


def _sample_bytes(net, batch, dtype) -> int:
    """Peak bytes of :func:`sample`: every entry drawn in float64, then kept as ``dtype``."""
    per = 8 + (np.dtype(dtype).itemsize if np.dtype(dtype) != np.float64 else 0)
    B = 1 if batch is None else int(batch)
    if isinstance(net, Chain):
        entries = (2 * net.depth + 2) * B
    else:
        n = net.widths
        entries = (n[0] + n[-1] + sum(n[l] * n[l - 1] + n[l] for l in range(1, len(n)))) * B
    return entries * per + 65536  # and the per-layer views and the mapping


def _backprop_bytes(inp: _Inputs, log_space: bool, wrt, block: int, nthreads: int) -> int:
    """Bytes :func:`backprop` allocates (outputs and per-thread work), not counting the inputs."""
    net, B = inp.net, (1 if inp.batch is None else inp.batch)
    it = inp.dtype.itemsize
    if isinstance(net, Chain):
        L = net.depth
        want = len(net.parameters) if wrt is None else len(wrt)
        outs = max(want, 2 * L if wrt is None else want) * B * it + B * it
        if log_space:
            outs += 4 * L * B * 8
        # a block's work: where a block is redone rescaled, about 16 (L, block) float64 rows at once
        # (measured with tracemalloc; tests/test_numeric.py holds the estimate to 1–1.5× that)
        work = 20 * L * min(block, B) * 8 * nthreads
        return outs + work
    n = net.widths
    # forward z, a; δ as (m, e) and its value; ∂C/∂W per sample where anything is batched, as
    # (m, e), its value and (log space) its log and sign
    Bw = B if inp.batch is not None else 1
    vec = sum(n) * Bw * 8 * 6
    mats = sum(n[l] * n[l - 1] for l in range(1, len(n))) * Bw * 8 * (5 if log_space else 3)
    return vec + mats


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def _known_names(net) -> str:
    L = net.depth
    if isinstance(net, Chain):
        return "a0, y, w1..w%d, b1..b%d" % (L, L)
    return "a0, y, W1..W%d, b1..b%d" % (L, L)


def _base_shape(net, name) -> tuple:
    return () if isinstance(net, Chain) else net.shape(name)


_FAST_SCALARS = (float, np.float64)


def _plain_array(name, v) -> np.ndarray:
    """``v`` as a plain ndarray (its own data, no copy): a subclass such as ``np.matrix`` would
    change what ``*`` means inside the pass (a matrix product where an elementwise one is meant);
    a masked array is refused, as the pass would read the data under its mask."""
    if isinstance(v, np.ma.MaskedArray):
        raise InvalidArgument("parameter %r is a masked array; symgrad reads every entry, masked or not: pass "
                              "np.ma.filled(x, value) or x.data" % (name,))
    return np.asarray(v)


def _all_finite(arr) -> bool:
    if arr.size == 0:
        return True
    # A sum is one fast pass and is non-finite whenever an entry is; only if finite entries
    # overflow the sum do we pay for the exact elementwise check.
    with np.errstate(over="ignore", invalid="ignore"):
        s = arr.sum()
    return bool(np.isfinite(s)) or bool(np.isfinite(arr).all())


@dataclass
class _Inputs:
    net: object
    values: dict  # name -> ndarray (unbatched: base shape; batched: (B,) + base)
    batched: dict  # name -> bool
    batch: int | None
    dtype: np.dtype
    ws: list = None  # chains: per-layer weights and biases, and whether each is batched
    bs: list = None
    wb: list = None
    bb: list = None
    wstack: np.ndarray = None  # chains with unbatched weights: all of them as one (L,) array
    deferred: bool = False  # batched w/b not yet checked for nan/inf (see backprop)
    #: Residual networks: per layer None (a plain layer) or α_l as a float of ``dtype``
    #: (``a_l = a_{l−1} + α_l φ(z_l)``); a symbolic α's value comes from ``params[α.name]``.
    alphas: tuple = None
    #: A symbolic α's name → its value (for the closed forms' symbol lookup).
    alpha_values: dict = None

    def block(self, name, s, e):
        v = self.values[name]
        return v[s:e] if self.batched[name] else v

    def w(self, j, s, e):
        """w_{j+1} for samples s:e (0-based layer j)."""
        return self.ws[j][s:e] if self.wb[j] else self.ws[j]

    def b(self, j, s, e):
        return self.bs[j][s:e] if self.bb[j] else self.bs[j]

    def replace(self, name, arr):
        """A copy with one entry replaced (for finite differences)."""
        new = _Inputs(self.net, {**self.values, name: arr}, self.batched, self.batch, self.dtype,
                      alphas=self.alphas, alpha_values=self.alpha_values)
        if self.ws is not None:
            new.ws, new.bs, new.wb, new.bb = list(self.ws), list(self.bs), self.wb, self.bb
            kind, j = name[0], name[1:]
            if kind in "wb" and j.isdigit():
                (new.ws if kind == "w" else new.bs)[int(j) - 1] = arr
            if not any(self.wb):
                new.wstack = np.array(new.ws, dtype=self.dtype)
        return new


def _validate(net, params, *, defer_wb=False) -> _Inputs:
    """Check names, shapes, dtypes and finiteness.  ``defer_wb``: a chain's batched w/b arrays
    are not scanned for nan/inf here; the caller must (``inp.deferred`` says so)."""
    if not isinstance(net, (Chain, Network)):
        raise InvalidArgument("net must be a symgrad chain or network, not %r" % (net,))
    if not isinstance(params, Mapping):
        raise InvalidArgument("params must be a mapping name → array such as symgrad.numeric.sample(net) returns, not %s" % type(params).__name__)
    names = ("a0", "y") + tuple(net.parameters)
    alpha_values = _alpha_values(net, params)
    known = set(names)
    unknown = [k for k in params if k not in known and k not in alpha_values]
    if unknown:
        bad = unknown[0]
        raise InvalidArgument("unknown parameter %r for %r; expected exactly: %s" % (bad, net, _known_names(net)))
    values, batched, batch, batch_from, dtypes = {}, {}, None, None, set()
    deferred = False
    is_chain = isinstance(net, Chain)
    if is_chain and len(params) == len(names) and not alpha_values:
        # Fast path for a (deep) chain given as plain float scalars: one array, one finiteness check.
        vals = [params[n] for n in names]
        if all(type(v) in _FAST_SCALARS for v in vals):
            stacked = np.array(vals, dtype=np.float64)
            if _all_finite(stacked):
                if net.loss.domain_open_unit:
                    _check_unit_target(stacked[1], net)
                return _finish(net, dict(zip(names, stacked)), dict.fromkeys(names, False), None, np.dtype(np.float64), alpha_values)
    scalars = []
    for name in names:
        base = _base_shape(net, name)
        if name not in params:
            raise InvalidArgument("missing parameter %r: expected a float array of shape %s (or (batch,) + %s)" % (name, base, base))
        v = params[name]
        if is_chain and type(v) in _FAST_SCALARS:
            # Deep chains have 2L scalar entries: check them together below, not one by one.
            values[name], batched[name] = v, False
            scalars.append(name)
            continue
        arr = _plain_array(name, v)
        kind = arr.dtype.kind
        if kind != "f" or arr.dtype.itemsize not in (4, 8):
            what = {"b": "bool", "i": "integer", "u": "unsigned integer", "c": "complex"}.get(kind, str(arr.dtype))
            raise InvalidArgument(
                "parameter %r has dtype %s (%s); expected float64 (or float32) of shape %s. Integers are not "
                "converted silently: pass floats, e.g. 1.0 or x.astype(float)" % (name, arr.dtype, what, base)
            )
        if arr.shape == base:
            batched[name] = False
        elif arr.ndim == len(base) + 1 and arr.shape[1:] == base and arr.shape[0] >= 1:
            batched[name] = True
            if batch is None:
                batch, batch_from = arr.shape[0], name
            elif arr.shape[0] != batch:
                raise InvalidArgument(
                    "parameter %r has batch size %d but %r has %d; expected shape %s or %s"
                    % (name, arr.shape[0], batch_from, batch, base, (batch,) + base)
                )
        else:
            raise InvalidArgument("parameter %r has shape %s; expected %s or (batch,) + %s" % (name, arr.shape, base, base))
        if defer_wb and batched[name] and name[0] in "wb":
            deferred = True
        elif not _all_finite(arr):
            idx = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            raise InvalidArgument(
                "parameter %r (expected shape %s) contains %r at index %s; inputs must be finite"
                % (name, base, arr[idx].item(), idx)
            )
        values[name] = arr
        dtypes.add(arr.dtype)
    if net.loss.domain_open_unit:
        _check_unit_target(values["y"], net)
    if scalars:
        stacked = np.array([values[n] for n in scalars], dtype=np.float64)
        if not _all_finite(stacked):
            bad = scalars[int(np.argmax(~np.isfinite(stacked)))]
            raise InvalidArgument("parameter %r (expected shape ()) is %r; inputs must be finite" % (bad, values[bad]))
        for n, v in zip(scalars, stacked):
            values[n] = v
        dtypes.add(np.dtype(np.float64))
    dtype = np.dtype(np.float32) if dtypes == {np.dtype(np.float32)} else np.dtype(np.float64)
    for name, arr in values.items():
        if arr.dtype != dtype:
            values[name] = arr.astype(dtype)
    inp = _finish(net, values, batched, batch, dtype, alpha_values)
    inp.deferred = deferred
    return inp


def _check_unit_target(y, net):
    y = np.asarray(y)
    if not (np.all(y >= 0) and np.all(y <= 1)):
        bad = y[~((y >= 0) & (y <= 1))].flat[0]
        raise InvalidArgument("parameter 'y' (expected shape %s) = %r: a cross_entropy target must lie in [0, 1]" % (_base_shape(net, "y"), float(bad)))


def _alpha_values(net, params) -> dict:
    """A residual network's symbolic α values from ``params`` (name → float), checked: each symbol
    of ``net.residual`` needs a finite float scalar under its name (``params["alpha"] = 0.5``);
    else InvalidArgument naming the symbol and the fix.  {} for a network without symbolic α."""
    out = {}
    for alpha in net.residual:
        if alpha is None or not getattr(alpha, "is_Symbol", False):
            continue
        name = alpha.name  # a residual scale's symbol, not an activation
        if name in out:
            continue
        if name not in params:
            raise InvalidArgument(
                "%r has the symbolic residual scale %s, but params has no value for it; pass its value as a float "
                "under its name, e.g. params[%r] = 0.5" % (net, name, name))
        v = params[name]
        arr = _plain_array(name, v)
        if arr.shape != () or arr.dtype.kind != "f":
            raise InvalidArgument(
                "params[%r] = %r: the residual scale %s must be one float (a scalar, the same for the whole batch), "
                "e.g. params[%r] = 0.5" % (name, v, name, name))
        f = float(arr)
        if not np.isfinite(f):
            raise InvalidArgument("params[%r] = %r: the residual scale %s must be finite, e.g. params[%r] = 0.5"
                                  % (name, f, name, name))
        out[name] = f
    return out


def _alphas_of(net, alpha_values, dtype) -> tuple | None:
    """Per layer None or α_l as a ``dtype`` float; None for a network without residual layers."""
    if not net.residual or all(r is None for r in net.residual):
        return None
    out = []
    for r in net.residual:
        if r is None:
            out.append(None)
            continue
        f = alpha_values[r.name] if getattr(r, "is_Symbol", False) else float(r)
        if not np.isfinite(f) or abs(f) > float(np.finfo(dtype).max):
            raise InvalidArgument("the residual scale %s = %r of %r is not a finite %s; use a smaller α (or float64 inputs)"
                                  % (r, f, net, dtype.name))
        out.append(dtype.type(f))
    return tuple(out)


def _finish(net, values, batched, batch, dtype, alpha_values=None) -> _Inputs:
    alpha_values = alpha_values or {}
    inp = _Inputs(net, values, batched, batch, dtype, alphas=_alphas_of(net, alpha_values, np.dtype(dtype)),
                  alpha_values=alpha_values)
    if isinstance(net, Chain):
        L = net.depth
        inp.ws = [values["w%d" % j] for j in range(1, L + 1)]
        inp.bs = [values["b%d" % j] for j in range(1, L + 1)]
        inp.wb = [batched["w%d" % j] for j in range(1, L + 1)]
        inp.bb = [batched["b%d" % j] for j in range(1, L + 1)]
        if not any(inp.wb):
            inp.wstack = np.array(inp.ws, dtype=dtype)
    return inp


