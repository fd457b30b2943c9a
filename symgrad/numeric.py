"""Numbers for the closed forms: parameters, forward and backward passes, log space, gradient checks.

Parameters
    A mapping from the network's own names to float arrays, like a PyTorch ``state_dict``:
    ``a0``, ``y``, ``w1..wL``, ``b1..bL`` for a chain (scalars); ``a0`` (n0,), ``y`` (nL,),
    ``W1..WL`` (n_l, n_{l-1}), ``b1..bL`` (n_l,) for a dense network.  Any entry may carry one
    leading batch axis of a common size B; unbatched entries broadcast.  Each batch index is an
    independent network evaluation (as with ``torch.func.vmap``): every gradient is the
    per-sample ``∂C_i/∂p``, with shape ``(B,) + shape(p)`` as soon as anything is batched.
    :func:`sample` draws parameters; ``BackpropResult.total(name)`` sums a gradient over the batch.

Validation (nothing is computed on garbage)
    A missing or unknown name, a wrong shape, inconsistent batch sizes, nan or ±inf, and a
    non-float dtype raise :class:`InvalidArgument` naming the parameter and the expected shape.
    Integer and bool inputs are *rejected*, not converted (write ``1.0``, or ``x.astype(float)``).
    float64 and float32 are accepted; the computation runs in float32 only if every entry is.

What "no inf, no nan" means
    For finite inputs, no ``RuntimeWarning`` is ever emitted and no nan is ever returned.  The
    forward values z_l, a_l are finite: z is computed also where the product w·a overflows but
    z does not (w = 1e308, a = 2, b = −1e308 gives z = 1e308); if an exact pre-activation exceeds
    the range of the dtype (1.8e308, or 3.4e38 for float32) :class:`InvalidArgument` is raised,
    naming the dtype, the layer and the batch index.
    Linear-space gradients stay linear: a block whose products overflow or underflow, or where a
    unit saturates, is redone with every product carried as m·2^k and rounded once at the end, so
    a representable gradient comes back to a few ulps (1e300 as 1e300, not through exp(log)), a
    factor that underflows (σ'(−800), tanh'(400)) is taken from its logarithm, 10^399·0 is 0,
    and cross-entropy's σ(z_L) − y is formed from the logit (σ(40) − 1 = −4.2e-18, not 0).
    A linear-space gradient is ±inf only as the correctly rounded value of a gradient whose
    exact magnitude exceeds 1.8e308 (an exploding gradient), and 0 where it underflows; with
    ``log_space=True`` the same gradient's ``log|∂C/∂p|`` is finite, and −inf exactly where the
    gradient is exactly zero in float64 arithmetic (a dead ReLU, ``a_{j-1} = 0``, ``a_L = y``, w = 0;
    the sign is then 0) or its log-magnitude is itself below −1.8e308 (|z| ~ 1e308 for σ' or
    tanh', z < −1.9e154 for GELU; the sign is kept).

Memory
    :func:`sample` and :func:`backprop` estimate the bytes they will allocate before allocating
    and raise :class:`InvalidArgument` with the estimate and the fix when it exceeds
    ``MEMORY_FRACTION`` (80%) of the memory available now (``MemAvailable``).

>>> import symgrad
>>> from symgrad.numeric import backprop, sample
>>> net = symgrad.chain(3)
>>> params = sample(net, 4, seed=0)
>>> res = backprop(net, params)
>>> res.grads["b1"].shape, res.layer_norms.shape
((4,), (4, 3))
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import sympy

from . import _numeric_logs as _nl
from ._numeric_logs import grad_sign, log_abs, log_abs_value, sign_value
from . import _jit
from .errors import InvalidArgument
from .networks import Chain, Network

__all__ = [
    "BackpropResult",
    "backprop",
    "evaluate_gradient",
    "evaluate_gradients",
    "forward",
    "sample",
]

#: Largest number of samples per block along the batch axis (blocks are then evened out so that
#: every thread gets the same share).  Measured on a 2-core machine (depth-50 sigmoid chain, batch
#: 200,000): blocks of 8192 / 16384 / 32768 took 0.10 / 0.080 / 0.076 s.  Smaller blocks keep the
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
# Sampling
# ---------------------------------------------------------------------------------------------

_INITS = ("normal", "uniform", "xavier", "glorot", "xavier_normal", "he", "kaiming", "constant")


def sample(net, batch=None, *, init="normal", seed=None, value=None, dtype=np.float64) -> dict:
    """Draw a parameter mapping for ``net`` (``a0``, ``y`` and every parameter).

    ``batch``: ``None`` for one network, or B for a leading batch axis of B independent draws.

    ``init`` (weights; biases are N(0,1) for ``normal`` and U(−1,1) for ``uniform``, else 0):

    * ``"normal"``: N(0, 1);  ``"uniform"``: U(−1, 1);
    * ``"xavier"`` / ``"glorot"``: U(−r, r) with r = √(6/(fan_in + fan_out)) (Glorot & Bengio);
      ``"xavier_normal"``: N(0, 2/(fan_in + fan_out));
    * ``"he"`` / ``"kaiming"``: N(0, 2/fan_in) (He et al.);
    * ``"constant"``: every weight and bias equals ``value``.

    A chain's fan_in and fan_out are 1.  The input ``a0`` is N(0, 1) and the target ``y`` is
    U(0, 1) (a valid cross-entropy target).  ``value`` fixes entries for worked examples: a
    number sets every weight and bias, a mapping ``{"w1": 0.5, "a0": 1.0, ...}`` sets those
    names (broadcast over the batch) and draws the rest.

    >>> import symgrad
    >>> p = sample(symgrad.chain(2), value={"w1": 0.5, "w2": 0.5, "b1": 0.0, "b2": 0.0, "a0": 1.0, "y": 0.0})
    >>> float(p["w2"])
    0.5
    """
    if not isinstance(net, (Chain, Network)):
        raise InvalidArgument("sample: net must be a symgrad chain or network, not %r" % (net,))
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1):
        raise InvalidArgument("sample: batch=%r must be None or a positive int, e.g. batch=1000" % (batch,))
    key = init.strip().lower() if isinstance(init, str) else init
    if key not in _INITS:
        raise InvalidArgument("sample: unknown init %r; known: %s" % (init, ", ".join(_INITS)))
    overrides: dict = {}
    if isinstance(value, Mapping):
        overrides = dict(value)
    elif value is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not math.isfinite(value):
            raise InvalidArgument("sample: value=%r must be a finite number or a mapping of names to values" % (value,))
        overrides = {p: float(value) for p in net.parameters}
    elif key == "constant":
        raise InvalidArgument("sample: init='constant' needs value=, e.g. value=0.5")
    if isinstance(dtype, str) and dtype not in ("float32", "float64"):
        raise InvalidArgument("sample: dtype=%r must be float32 or float64 (np.float32 or np.float64)" % (dtype,))
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise InvalidArgument("sample: dtype=%r must be float32 or float64 (np.float32 or np.float64)" % (dtype,)) from None
    if dtype not in (np.float32, np.float64):
        raise InvalidArgument("sample: dtype=%s must be float32 or float64" % dtype)
    if seed is not None and (isinstance(seed, (bool, str, bytes, float)) or not (
            isinstance(seed, (numbers.Integral, np.random.SeedSequence, np.random.Generator, np.random.BitGenerator))
            and (not isinstance(seed, numbers.Integral) or seed >= 0))):
        raise InvalidArgument("sample: seed=%r must be None, a non-negative int or a NumPy Generator/SeedSequence, e.g. seed=0" % (seed,))
    names = ("a0", "y") + tuple(net.parameters)
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise InvalidArgument("sample: value names %s are not parameters of %r; known: %s" % (unknown, net, _known_names(net)))
    _check_memory("sample(%r, batch=%r)" % (net, batch), _sample_bytes(net, batch, dtype),
                  "use smaller widths, a smaller batch, or dtype=np.float32")
    rng = np.random.default_rng(seed)
    lead = () if batch is None else (int(batch),)

    def weights(shape, fan_in, fan_out):
        if key == "normal":
            return rng.standard_normal(shape)
        if key == "uniform":
            return rng.uniform(-1.0, 1.0, shape)
        if key in ("xavier", "glorot"):
            r = math.sqrt(6.0 / (fan_in + fan_out))
            return rng.uniform(-r, r, shape)
        if key == "xavier_normal":
            return rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), shape)
        if key in ("he", "kaiming"):
            return rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)
        return np.zeros(shape)

    def biases(shape):
        if key == "normal":
            return rng.standard_normal(shape)
        if key == "uniform":
            return rng.uniform(-1.0, 1.0, shape)
        return np.zeros(shape)

    out: dict = {}
    if isinstance(net, Chain):
        L = net.depth
        # One (L, B) array per kind, handed out as contiguous rows: no per-layer allocation.
        W = weights((L,) + lead, 1, 1).astype(dtype, copy=False)
        Bs = biases((L,) + lead).astype(dtype, copy=False)
        out["a0"] = rng.standard_normal(lead).astype(dtype)
        out["y"] = rng.uniform(0.0, 1.0, lead).astype(dtype)
        for j in range(L):
            out["w%d" % (j + 1)] = W[j]
            out["b%d" % (j + 1)] = Bs[j]
        if not lead:
            # Scalars: Python floats for float64 (cheap to validate by the 100000), else NumPy scalars.
            conv = float if dtype == np.float64 else dtype.type
            out = {k: conv(v) for k, v in out.items()}
    else:
        n = net.widths
        out["a0"] = rng.standard_normal(lead + (n[0],)).astype(dtype)
        out["y"] = rng.uniform(0.0, 1.0, lead + (n[-1],)).astype(dtype)
        for l in range(1, net.depth + 1):
            out["W%d" % l] = weights(lead + (n[l], n[l - 1]), n[l - 1], n[l]).astype(dtype, copy=False)
        for l in range(1, net.depth + 1):
            out["b%d" % l] = biases(lead + (n[l],)).astype(dtype, copy=False)
    for name, v in overrides.items():
        arr = np.asarray(v, dtype=float)
        base = _base_shape(net, name)
        try:
            out[name] = np.array(np.broadcast_to(arr, lead + base), dtype=dtype)[()] if (lead or base) else dtype.type(arr)
        except ValueError:
            raise InvalidArgument("sample: value for %r has shape %s; expected %s" % (name, arr.shape, base)) from None
    return out


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
        new = _Inputs(self.net, {**self.values, name: arr}, self.batched, self.batch, self.dtype)
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
    known = set(names)
    unknown = [k for k in params if k not in known]
    if unknown:
        bad = unknown[0]
        raise InvalidArgument("unknown parameter %r for %r; expected exactly: %s" % (bad, net, _known_names(net)))
    values, batched, batch, batch_from, dtypes = {}, {}, None, None, set()
    deferred = False
    is_chain = isinstance(net, Chain)
    if is_chain and len(params) == len(names):
        # Fast path for a (deep) chain given as plain float scalars: one array, one finiteness check.
        vals = [params[n] for n in names]
        if all(type(v) in _FAST_SCALARS for v in vals):
            stacked = np.array(vals, dtype=np.float64)
            if _all_finite(stacked):
                if net.cost.name == "cross_entropy":
                    _check_unit_target(stacked[1], net)
                return _finish(net, dict(zip(names, stacked)), dict.fromkeys(names, False), None, np.dtype(np.float64))
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
        arr = v if isinstance(v, np.ndarray) else np.asarray(v)
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
    if net.cost.name == "cross_entropy":
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
    inp = _finish(net, values, batched, batch, dtype)
    inp.deferred = deferred
    return inp


def _check_unit_target(y, net):
    y = np.asarray(y)
    if not (np.all(y >= 0) and np.all(y <= 1)):
        bad = y[~((y >= 0) & (y <= 1))].flat[0]
        raise InvalidArgument("parameter 'y' (expected shape %s) = %r: a cross_entropy target must lie in [0, 1]" % (_base_shape(net, "y"), float(bad)))


def _finish(net, values, batched, batch, dtype) -> _Inputs:
    inp = _Inputs(net, values, batched, batch, dtype)
    if isinstance(net, Chain):
        L = net.depth
        inp.ws = [values["w%d" % j] for j in range(1, L + 1)]
        inp.bs = [values["b%d" % j] for j in range(1, L + 1)]
        inp.wb = [batched["w%d" % j] for j in range(1, L + 1)]
        inp.bb = [batched["b%d" % j] for j in range(1, L + 1)]
        if not any(inp.wb):
            inp.wstack = np.array(inp.ws, dtype=dtype)
    return inp


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass
class BackpropResult:
    """What :func:`backprop` returns.

    * ``grads``: name → ``∂C/∂name`` (per sample: leading batch axis when the input is batched);
    * ``deltas``: ``[δ^1, …, δ^L]`` with ``δ^l = ∂C/∂z^l`` (= ``∂C/∂b_l``); ``None`` for a chain
      evaluated with ``wrt=`` (which keeps only the gradients asked for);
    * ``layer_norms``: ‖δ^l‖ per layer, "the speed of learning" of layer l (Nielsen, ch. 5),
      shape (L,) or (B, L);
    * ``log_abs``, ``sign``: name → ``log|∂C/∂name|`` and its sign (only with ``log_space=True``);
    * ``loss``: the cost C per sample.
    """

    grads: dict
    deltas: list
    loss: object
    log_abs: dict | None = None
    sign: dict | None = None
    batch: int | None = None
    _norms: np.ndarray | None = field(default=None, repr=False)
    _buffers: tuple | None = field(default=None, repr=False)  # a chain's (δ, ∂C/∂w) arrays, for out=

    @property
    def layer_norms(self) -> np.ndarray:
        if self.deltas is None:
            raise InvalidArgument("layer_norms need every δ^l: call backprop without wrt= (wrt keeps memory bounded by dropping them)")
        if self._norms is None:
            ax = 1 if self.batch is not None else 0
            cols = [np.abs(d) if np.ndim(d) == ax else np.sqrt(np.sum(np.square(d, dtype=np.float64), axis=-1)) for d in self.deltas]
            with np.errstate(over="ignore"):
                self._norms = np.stack([np.asarray(c, dtype=np.float64) for c in cols], axis=-1)
        return self._norms

    def total(self, name: str) -> np.ndarray:
        """``Σ_i ∂C_i/∂name`` over the batch: the gradient of the summed loss (PyTorch's ``.grad``)."""
        g = self.grads[name]
        return np.sum(g, axis=0) if self.batch is not None else g


# ---------------------------------------------------------------------------------------------
# Chains: blocked kernels
# ---------------------------------------------------------------------------------------------


def _is_sigmoid(act) -> bool:
    return act.builtin and act.name == "sigmoid"


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
    if n == 1 and D is None and all(_is_sigmoid(a) for a in net.activations):
        return _sigmoid_forward_scalar(inp, s, Z, A)
    a = np.empty(n, dtype=inp.dtype)
    a[...] = inp.block("a0", s, e)
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


def _output_delta(net, aL, zL, y):
    """∂C/∂a_L factor (or δ_L itself when the loss cancels φ'), and the per-sample loss."""
    act, cost = net.activations[-1], net.cost
    if cost.cancels_with(act):
        # Binary cross-entropy from the logit: softplus(z) − y z, finite for every finite z.
        # ∂C/∂z_L = σ(z_L) − y from the logit: a_L − y cancels (σ(40) − 1 is −4.2e-18, not 0).
        loss = np.maximum(zL, 0.0) - y * zL + np.log1p(np.exp(-np.abs(zL)))
        with np.errstate(over="ignore", under="ignore"):
            d = _nl.sigmoid_minus_y(zL, y)[0].astype(np.result_type(zL, y), copy=False)
        return d, loss, True
    if cost.name == "cross_entropy":
        if not (np.all(aL > 0) and np.all(aL < 1)):
            i = int(np.argmax(~((aL > 0) & (aL < 1)))) if np.ndim(aL) else 0
            raise InvalidArgument(
                "cross_entropy needs the output a_L in (0, 1), but the %s output gives a_L = %r (batch index %d); "
                "use a sigmoid output layer" % (act.name, float(np.reshape(aL, -1)[i]), i)
            )
        # 1 − a_L formed from a rounded a_L has relative error up to u·a_L/(1 − a_L): where that
        # passes √u, ∂C/∂a_L = (a_L − y)/(a_L(1 − a_L)) keeps fewer than half its digits (tanh at
        # z = 18 gave 2.089 for 1 + tanh(18) = 2.000).  A sigmoid output avoids it: its
        # ∂C/∂z_L = σ(z_L) − y comes from the logit.  Refuse rather than answer wrongly.
        dt = np.result_type(aL, np.float32)
        half_digits = math.sqrt(float(np.finfo(dt).eps))
        lost = (1.0 - aL) < half_digits
        if np.any(lost):
            i = int(np.argmax(lost)) if np.ndim(aL) else 0
            raise InvalidArgument(
                "cross_entropy with a %s output at a_L = %r (batch index %d): 1 − a_L keeps fewer than half its digits, "
                "so ∂C/∂a_L would be mostly rounding; use a sigmoid output layer (its σ(z_L) − y is computed from the logit)"
                % (act.name, float(np.reshape(aL, -1)[i]), i))
        loss = -(y * np.log(aL) + (1.0 - y) * np.log1p(-aL))
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            d = (aL - y) / (aL * (1.0 - aL))
        if not _all_finite(d):
            i = int(np.argmax(~np.isfinite(np.asarray(d)))) if np.ndim(d) else 0
            raise InvalidArgument(
                "cross_entropy with a %s output at a_L = %r (batch index %d): ∂C/∂a_L = (a_L − y)/(a_L(1 − a_L)) overflows; "
                "use a sigmoid output layer (its ∂C/∂z_L = σ(z_L) − y is computed from the logit)"
                % (act.name, float(np.reshape(aL, -1)[i]), i))
        return d, loss, False
    if _is_sigmoid(act):
        # σ(z_L) − y from the logit, as for cross-entropy: a_L − y cancels where σ saturates.
        with np.errstate(over="ignore", under="ignore"):
            d = _nl.sigmoid_minus_y(zL, y)[0].astype(np.result_type(aL, y), copy=False)
            return d, 0.5 * np.square(d), False
    with np.errstate(over="ignore"):
        return aL - y, 0.5 * np.square(aL - y), False


class _NonFiniteBlock(Exception):
    """A block met a non-finite z: a deferred input check (or an overflow) must explain it."""


class _Rescale(Exception):
    """A block's linear products left the float64 range (or a factor underflowed): it is redone
    by :func:`_scaled_block`."""


#: |z| above which σ(z) (z < 0) or σ'(z) is below the smallest normal float64 (e^−708.4).
_SIGMOID_SAFE_Z = 708.0


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


def _tiny_of(x) -> float:
    """The smallest normal number of ``x``'s dtype (float32's 1.2e-38, else float64's)."""
    return float(np.finfo(np.float32).tiny) if np.result_type(x) == np.float32 else _nl.TINY


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
        out_act, cost = net.activations[-1], net.cost
        zl = np.asarray(zL, dtype=np.float64)
        if cost.cancels_with(out_act):
            d, la, sg = _nl.sigmoid_minus_y(zl, y)
            M[L - 1], E[L - 1] = _nl.split(d, la, sg)
        else:
            al = np.asarray(aL, dtype=np.float64)
            dd = _split_minus_y(out_act, al, zl, y)
            if cost.name == "cross_entropy":
                dd = _nl.smul(dd, _split_inv_a_one_minus_a(al))
            M[L - 1], E[L - 1] = _nl.smul((M[L - 1], E[L - 1]), dd)
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
    out_act, cost = net.activations[-1], net.cost
    y = np.broadcast_to(inp.block("y", s, e), (n,))
    if cost.cancels_with(out_act):
        _, LG[L - 1], SG[L - 1] = _nl.sigmoid_minus_y(zL, y)
    elif _is_sigmoid(out_act):
        # σ(z_L) − y from the logit (a_L − y cancels where σ saturates), times σ'(z_L) as below.
        _, lg, sg = _nl.sigmoid_minus_y(zL, y)
        LG[L - 1] += lg
        SG[L - 1] *= sg
        if cost.name == "cross_entropy":
            LG[L - 1] -= np.log(aL) + np.log1p(-aL)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            d = aL - y
            # |a_L − y| beyond the range (a_L = 1e300, y = −1.8e308): halve both, exactly
            ld = np.where(np.isfinite(d), log_abs(np.where(np.isfinite(d), d, 1.0)), log_abs(0.5 * aL - 0.5 * y) + math.log(2.0))
            # a_L − y where a_L underflowed to 0 and y = 0 is a_L: its log comes from z_L.
            ld = np.where((np.abs(d) < _nl.TINY) & (y == 0), log_abs_value(out_act, zL), ld)
            LG[L - 1] += ld  # below −1.8e308 the correctly rounded log is −inf
        SG[L - 1] *= np.where(d == 0, sign_value(out_act, zL) * (y == 0), np.sign(d))
        if cost.name == "cross_entropy":
            LG[L - 1] -= np.log(aL) + np.log1p(-aL)
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

#: ``backend="auto"`` compiles (or loads from numba's cache) only for chains with at least this
#: many layer-samples, so small checks never pay numba's start-up.
JIT_MIN_WORK = 1 << 18


def _use_jit(inp: _Inputs, backend, log_space, n) -> bool:
    net = inp.net
    if backend == "numpy":
        return False
    why = None
    if not all(_is_sigmoid(a) for a in net.activations):
        why = "all-sigmoid chains only"
    elif log_space:
        why = "linear space only (log_space=True runs on NumPy)"
    elif inp.dtype != np.float64:
        why = "float64 only"
    elif inp.batch is None or not (all(inp.wb) and all(inp.bb)):
        why = "batched w and b only (every w_l and b_l of shape (batch,))"
    if backend == "auto":
        return why is None and n * net.depth >= JIT_MIN_WORK and _jit.available()
    if why is not None:
        raise InvalidArgument("backend='numba' has a compiled kernel for %s; use backend='numpy' or 'auto'" % why)
    if not _jit.available():
        raise InvalidArgument("backend='numba' needs numba (%s); install it with pip install 'symgrad[jit]', or use backend='numpy'"
                              % _jit.import_error())
    return True


def _jit_block(inp: _Inputs, jk, rows, s, e, D, oD, A, oA, loss):
    """One block through the compiled kernel, writing D[:, oD:oD+m] (δ), A[:, oA:oA+m] (∂C/∂w)
    and loss[s:e]."""
    WL, BL, a0, y = rows
    status = jk["chain_block"](WL, BL, a0, y, s, e, A, oA, D, oD, inp.net.cost.name == "cross_entropy", loss)
    if status > 0:
        raise _NonFiniteBlock(status - 1)
    if status < 0:
        raise _Rescale()  # a product left the normal float64 range, or a unit saturated


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

    ``backend``: ``"auto"`` (default) uses the compiled kernel of :mod:`symgrad._jit` for large
    all-sigmoid chains when numba is installed (``pip install 'symgrad[jit]'``) and NumPy
    otherwise; ``"numpy"`` and ``"numba"`` force one (``"numba"`` raises ``InvalidArgument``
    where it does not apply).  Both give the same values to a few ulps.

    ``out``: a previous result of the same chain and batch (``wrt=None``) whose memory this call
    writes into and returns, instead of allocating: the caller owns the memory and decides when
    it may be overwritten (fresh pages cost the OS a zeroing pass, about a third of the compiled
    kernel's time on the README's workload).  That previous result's values are overwritten.

    >>> import symgrad
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
    return BackpropResult(grads, deltas, squeeze(loss), log_abs_d, sign_d, B, _buffers=bufs)


def forward(net, params) -> dict:
    """The forward pass: local name → value (``z1``, ``a1``, …), plus ``loss`` (per sample).

    Holds every layer's values; for deep chains with large batches prefer :func:`backprop`.
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
            zs.append(z)
            As.append(a)
    return zs, As


def _dense_loss(inp, zL, aL):
    net = inp.net
    y = inp.values["y"]
    if net.cost.cancels_with(net.activations[-1]):
        per = np.maximum(zL, 0.0) - y * zL + np.log1p(np.exp(-np.abs(zL)))
    else:
        per = _output_delta(net, aL, zL, y)[1]
    with np.errstate(over="ignore"):
        return np.sum(per, axis=-1)


def _split_grad(act, z):
    """φ'(z) as m·2^k, from log|φ'(z)| where it underflows in linear space."""
    return _nl.split(act.grad(z), lambda m: act.log_abs_grad(z[m]), lambda m: grad_sign(act, z[m]))


def _split_value(act, z, a):
    """a = φ(z) as m·2^k, from log|φ(z)| where it underflows in linear space."""
    return _nl.split(a, lambda m: log_abs_value(act, z[m]), lambda m: sign_value(act, z[m]))


def _split_output(net, aL, zL, y):
    """∂C/∂z_L as m·2^k: σ(z_L) − y from the logit when the loss cancels σ'; else
    φ'(z_L)·∂C/∂a_L, with a_L − y = a_L taken from its log where a_L underflowed and y = 0."""
    act, cost = net.activations[-1], net.cost
    if cost.cancels_with(act):
        return _nl.split(*_nl.sigmoid_minus_y(zL, y))
    dd = _split_minus_y(act, aL, zL, y)
    if cost.name == "cross_entropy":
        dd = _nl.smul(dd, _split_inv_a_one_minus_a(aL))
    return _nl.smul(_split_grad(act, zL), dd)


def _split_inv_a_one_minus_a(aL):
    """1/(a_L(1 − a_L)) as m·2^k: formed from a_L's mantissa and exponent, so a subnormal a_L
    (1e-310) gives 1e310 as a scaled number, not inf."""
    m, e = _nl.split(aL)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = _nl.split(1.0 / (m * (1.0 - np.asarray(aL, dtype=np.float64))))
    return inv[0], inv[1] - e


def _split_minus_y(act, aL, zL, y):
    """a_L − y as m·2^k: for a sigmoid output σ(z_L) − y from the logit (a_L − y cancels where σ
    saturates: σ(40) − 1 is −4.2e-18, not 0); otherwise a_L − y, with a_L taken from its log where
    it underflowed and y = 0."""
    if _is_sigmoid(act):
        return _nl.split(*_nl.sigmoid_minus_y(zL, y))
    return _nl.split_diff(aL, y, lambda m: np.where(y[m] == 0, log_abs_value(act, zL[m]), -np.inf),
                          lambda m: sign_value(act, zL[m]))


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


def _dense_linear(inp: _Inputs, zs, As, log_space: bool, want) -> tuple:
    """The plain linear backward pass, for the common case; raises :class:`_Rescale` where a
    product could leave the normal range or a factor underflowed, for :func:`_dense_backprop`'s
    rescaled pass."""
    net, L = inp.net, inp.net.depth
    out, y = net.activations[-1], inp.values["y"]
    zL, aL = zs[L], As[L]
    safe = _DENSE_SAFE

    def check_scale(v):
        m = np.max(np.abs(v), axis=-1)
        if not (np.all(m <= safe) and np.all((m >= 1 / safe) | (m == 0))):
            raise _Rescale()

    if out.builtin and out.name == "sigmoid" and net.cost.name == "cross_entropy":
        d = _nl.sigmoid_minus_y(zL, y)[0].astype(inp.dtype, copy=False)
        if np.any(np.abs(d) < _tiny_of(d)):
            raise _Rescale()
    else:
        g = out.grad(zL)
        if _low_with_log(g, lambda m: out.log_abs_grad(zL[m])) or _low_with_log(aL, lambda m: log_abs_value(out, zL[m])):
            raise _Rescale()
        with np.errstate(over="raise", under="raise", invalid="raise", divide="raise"):
            diff = aL - y if not _is_sigmoid(out) else _nl.sigmoid_minus_y(zL, y)[0]
            if np.any(np.abs(diff) < _tiny_of(diff)):
                raise _Rescale()
            d = g * diff
            if net.cost.name == "cross_entropy":
                d = d / (aL * (1.0 - aL))
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
            delta[l - 1] = _nl.smul(_split_grad(net.activations[l - 2], f64(zs[l - 1])), v)
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
                ap = _split_value(net.activations[l - 2], f64(zs[l - 1]), f64(As[l - 1]))
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
    return BackpropResult(grads, deltas, loss, log_abs_d, sign_d, inp.batch)


# ---------------------------------------------------------------------------------------------
# Closed forms evaluated
# ---------------------------------------------------------------------------------------------

_LAMBDA_CACHE: dict = {}


def _lambdified(expr):
    """One lambdify (with common-subexpression elimination) per distinct factor expression."""
    fn = _LAMBDA_CACHE.get(expr)
    if fn is None:
        # lambdify prints symbol and function names into Python source and runs it: only plain
        # identifiers and SymPy's own (or symgrad's) functions may reach it, never a name that a
        # user-built expression could carry (Function("__import__('os')...")).
        for s in expr.free_symbols:
            if not (s.name.isidentifier() and s.name.isascii()):
                raise InvalidArgument("cannot evaluate a factor with the symbol named %r: names must be plain identifiers" % s.name)
        for f in expr.atoms(sympy.Function):
            if isinstance(type(f), sympy.core.function.UndefinedFunction) or not type(f).__name__.isidentifier():
                raise InvalidArgument("cannot evaluate a factor with the undefined function %r" % type(f).__name__)
        syms = sorted(expr.free_symbols, key=lambda s: s.name)
        f = sympy.lambdify(syms, expr, modules="numpy", cse=True)
        fn = (syms, f)
        _LAMBDA_CACHE[expr] = fn
    return fn


def evaluate_gradient(gradient, params, *, log_space=False, _locals=None):
    """Evaluate a closed-form :class:`symgrad.Gradient` numerically, factor by factor.

    Each factor of ``gradient.factors`` is evaluated from the forward pass's local values
    (``φ'(z_j)`` by the activation's stable kernel at z_j; symbols by their values; any other
    factor, such as ``a_L − y``, through one ``lambdify(..., cse=True)``) and the factors are
    multiplied in chain order.  The network is never composed into one expression.

    With ``log_space=True`` returns ``(value, log|value|, sign)``, the log-magnitude being the
    sum of the factors' ``log|·|``.

    >>> import symgrad
    >>> net = symgrad.chain(3)
    >>> p = sample(net, 5, seed=1)
    >>> g = evaluate_gradient(net.gradient("w2"), p)
    >>> bool(np.allclose(g, backprop(net, p).grads["w2"]))
    True
    """
    from .derivation import Gradient

    if not isinstance(gradient, Gradient):
        raise InvalidArgument("evaluate_gradient: expected a symgrad Gradient (net.gradient(name)), not %r" % (gradient,))
    net = gradient.network
    inp = params if isinstance(params, _Inputs) else _validate(net, params)
    loc = _locals if _locals is not None else _forward_locals(inp)
    if isinstance(net, Chain):
        return _eval_chain_factors(gradient, inp, loc, log_space)
    return _eval_dense_factors(gradient, inp, loc, log_space)


def _sym_value(name, inp, loc):
    if name in inp.values:
        return inp.values[name]
    return loc[name]


def _layer_of(name):
    m = re.fullmatch(r"[a-z](\d+)", name)
    return int(m.group(1)) if m else None


def _chain_output_factor(f, net, inp, loc):
    """The factor a_L − y, as m·2^k without cancellation (σ(z_L) − y from the logit when the
    loss cancels σ'), or None if ``f`` is not that factor."""
    L = net.depth
    syms = {q.name: q for q in f.free_symbols}
    if set(syms) != {"a%d" % L, "y"} or sympy.expand(f - (syms["a%d" % L] - syms["y"])) != 0:
        return None
    zl = np.asarray(loc["z%d" % L], dtype=np.float64)
    yv = np.broadcast_to(np.asarray(inp.values["y"], dtype=np.float64), zl.shape)
    out = net.activations[-1]
    al = np.asarray(loc["a%d" % L], dtype=np.float64)
    return _split_minus_y(out, al, zl, yv)


def evaluate_gradients(gradients, params, *, _locals=None) -> list:
    """:func:`evaluate_gradient` for several gradients of one network, in one pass.

    For a chain every closed form is a slice of one shared factor sequence
    ``(φ'(z_1), w_2, φ'(z_2), …, ∂C/∂z_L)`` (with at most one factor in front: ``a_{j−1}`` or
    ``w_1``), so each distinct factor is evaluated once and the products of the sequence's
    suffixes are formed once, from the output backwards: all 2L closed forms cost O(L) instead
    of O(L²).  Each value is still a product of closed-form factors evaluated from the forward
    pass (never backprop's recursion), carried as m·2^k and rounded once.  Dense networks are
    evaluated one gradient at a time.

    * ``gradients``: a sequence of :class:`symgrad.Gradient` of the same network;
    * returns a list of arrays, one per gradient, as :func:`evaluate_gradient` returns them.

    >>> import symgrad
    >>> net = symgrad.chain(3)
    >>> p = sample(net, 4, seed=1)
    >>> got = evaluate_gradients([net.gradient(n) for n in net.parameters], p)
    >>> all(np.allclose(g, backprop(net, p).grads[n], rtol=1e-12, atol=0) for g, n in zip(got, net.parameters))
    True
    """
    from .derivation import Gradient, _chain_sequence

    gradients = list(gradients)
    if not gradients:
        return []
    for g in gradients:
        if not isinstance(g, Gradient):
            raise InvalidArgument("evaluate_gradients: expected symgrad Gradients (net.gradient(name)), not %r" % (g,))
    net = gradients[0].network
    if any(g.network is not net for g in gradients):
        raise InvalidArgument("evaluate_gradients: every gradient must belong to the same network")
    inp = params if isinstance(params, _Inputs) else _validate(net, params)
    loc = _locals if _locals is not None else _forward_locals(inp)
    if not isinstance(net, Chain):
        return [_eval_dense_factors(g, inp, loc, False) for g in gradients]
    seq = _chain_sequence(net)
    n = len(seq)
    cache: dict = {}

    def split_of(f):
        key = id(f)
        if key not in cache:
            cache[key] = _split_factor(f, net, inp, loc)
        return cache[key]

    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        suffix = [None] * (n + 1)
        for k in range(n - 1, -1, -1):
            x = split_of(seq[k])
            suffix[k] = x if suffix[k + 1] is None else _nl.smul(x, suffix[k + 1])
        out = []
        for g in gradients:
            fs = g.factors
            for lead in range(0, min(3, len(fs)) + 1):
                k = n - (len(fs) - lead)
                # Tuple equality compares element identity first, in C: a slice of the shared
                # sequence is recognised without a Python loop over its factors.
                if 0 <= k <= n and fs[lead:] == seq[k:]:
                    break
            else:  # not a slice of the shared sequence: evaluate it on its own
                out.append(_eval_chain_factors(g, inp, loc, False))
                continue
            acc = suffix[k]
            for f in reversed(fs[:lead]):
                x = split_of(f)
                acc = x if acc is None else _nl.smul(x, acc)
            out.append(_finish_value(acc, inp, False))
    return out


def _split_factor(f, net, inp, loc):
    """One chain factor as m·2^k (see :func:`_eval_chain_factors`)."""
    from .activations import ActivationPrime

    if isinstance(f, ActivationPrime):
        zv = np.atleast_1d(np.asarray(_sym_value(f.args[0].name, inp, loc), dtype=np.float64))
        return _split_grad(f._activation, zv)
    if isinstance(f, sympy.Symbol):
        v = np.atleast_1d(np.asarray(_sym_value(f.name, inp, loc), dtype=np.float64))
        j = _layer_of(f.name)
        if f.name.startswith("a") and j:  # an activation: from its log where it underflowed
            zv = np.atleast_1d(np.asarray(loc["z%d" % j], dtype=np.float64))
            return _split_value(net.activations[j - 1], zv, v)
        return _nl.split(v)
    x = _chain_output_factor(f, net, inp, loc)
    if x is None:
        syms, fn = _lambdified(f)
        x = _nl.split(np.atleast_1d(np.asarray(fn(*[_sym_value(q.name, inp, loc) for q in syms]), dtype=np.float64)))
    return x


def _finish_value(acc, inp, log_space):
    value = _nl.value(acc, inp.dtype)
    logv, sign = _nl.log_of(acc)
    if inp.batch is not None:
        value = np.broadcast_to(value, (inp.batch,))
        logv, sign = np.broadcast_to(logv, (inp.batch,)), np.broadcast_to(sign, (inp.batch,))
    else:
        value, logv, sign = (np.reshape(q, -1)[0] for q in (value, logv, sign))
    if log_space:
        return value, logv, sign
    return value


def _eval_chain_factors(gradient, inp, loc, log_space):
    """The factors multiplied as m·2^k (``_numeric_logs.split``): no partial product overflows
    or underflows (10^399 · 0 is 0, not nan), factors that underflow in linear space come from
    their logs, and the value is rounded once at the end."""
    net = gradient.network
    acc = None
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        for f in gradient.factors:
            x = _split_factor(f, net, inp, loc)
            acc = x if acc is None else _nl.smul(acc, x)
        return _finish_value(acc, inp, log_space)


def _eval_matrix(f, inp, loc):
    """A matrix-expression factor as (B?, rows, cols) arrays (vectors as (B?, n, 1))."""
    from .derivation import ActivationJacobian, CostGradient

    if isinstance(f, sympy.MatrixSymbol):
        v = np.asarray(_sym_value(f.name, inp, loc))
        return v if f.name.startswith("W") else v[..., :, None]
    if isinstance(f, sympy.Transpose):
        return np.swapaxes(_eval_matrix(f.arg, inp, loc), -1, -2)
    if isinstance(f, ActivationJacobian):
        zv = np.asarray(_sym_value(f.args[0].name, inp, loc))
        return ("diag", f._activation.grad(zv)[..., :, None])
    if isinstance(f, CostGradient):
        a = _sym_value(f.args[0].name, inp, loc)
        y = _sym_value(f.args[1].name, inp, loc)
        return (f._loss.dvalue(a, y))[..., :, None]
    if isinstance(f, sympy.MatAdd):
        out = None
        for t in f.args:
            m = _eval_matrix(t, inp, loc)
            out = m if out is None else out + m
        return out
    if isinstance(f, sympy.MatMul):
        coeff, mats = f.as_coeff_matrices()
        out = None
        for t in mats:
            m = _eval_matrix(t, inp, loc)
            out = m if out is None else np.matmul(out, m)
        return float(coeff) * out
    raise InvalidArgument("evaluate_gradient: cannot evaluate factor %r" % (f,))


def _dense_vector_factor(f, inp, loc):
    """A vector-valued factor (∂C/∂a^L, a^L − y) as m·2^k of shape (…, n), or None."""
    from .derivation import CostGradient

    net = inp.net
    L = net.depth
    out = net.activations[-1]
    if isinstance(f, (CostGradient, sympy.MatAdd)):
        names = {q.name for q in f.free_symbols}
        if names == {"a%d" % L, "y"}:
            zl = np.asarray(loc["z%d" % L], dtype=np.float64)
            al = np.asarray(loc["a%d" % L], dtype=np.float64)
            y = np.broadcast_to(np.asarray(inp.values["y"], dtype=np.float64), zl.shape)
            if isinstance(f, CostGradient):
                if f._loss.name == "quadratic":
                    return _split_output_quadratic(out, al, zl, y)
                return _nl.split(np.asarray(f._loss.dvalue(al, y), dtype=np.float64))
            # exactly the two terms a^L and −y (structurally: nothing is simplified)
            if isinstance(f, sympy.MatAdd) and sorted(str(t) for t in f.args) == sorted(["a%d" % L, "-y"]):
                if net.cost.cancels_with(out):
                    return _nl.split(*_nl.sigmoid_minus_y(zl, y))
                return _split_output_quadratic(out, al, zl, y)
    return None


def _split_output_quadratic(out, al, zl, y):
    return _split_minus_y(out, al, zl, y)


def _eval_dense_factors(gradient, inp, loc, log_space):
    """Right to left, every product a matrix times a vector, carried as m·2^k per entry as in
    :func:`_dense_backprop`: no partial product overflows or underflows, and each entry is
    rounded once at the end."""
    from .derivation import ActivationJacobian

    factors = list(gradient.factors)
    trailing = None
    if isinstance(factors[-1], sympy.Transpose) and isinstance(factors[-1].arg, sympy.MatrixSymbol) and factors[-1].arg.name.startswith("a"):
        trailing = factors[-1].arg.name
        factors = factors[:-1]
    net = inp.net
    f64 = lambda x: np.asarray(x, dtype=np.float64)  # noqa: E731
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        v = None
        for f in reversed(factors):
            if isinstance(f, ActivationJacobian):
                x = _split_grad(f._activation, f64(_sym_value(f.args[0].name, inp, loc)))
                v = x if v is None else _nl.smul(x, v)
                continue
            if v is not None and isinstance(f, sympy.Transpose) and isinstance(f.arg, sympy.MatrixSymbol):
                name = f.arg.name
                v = _rescaled_vecmat(v, f64(_sym_value(name, inp, loc)), inp.batched.get(name, False))
                continue
            if v is None:
                v = _dense_vector_factor(f, inp, loc)
                if v is not None:
                    continue
            # Anything else: evaluate it as a matrix and apply it linearly.
            m = _eval_matrix(f, inp, loc)
            m = m[1][..., 0] if isinstance(m, tuple) else m
            if v is None:
                v = _nl.split(f64(m)[..., 0] if np.ndim(m) and np.shape(m)[-1] == 1 else f64(m))
            else:
                cur = _nl.value(v)
                v = _nl.split(np.matmul(m, cur[..., None])[..., 0] if np.ndim(m) >= 2 and np.shape(m)[-1] == cur.shape[-1] else m * cur)
        if trailing is not None:
            j = _layer_of(trailing)
            av = f64(_sym_value(trailing, inp, loc))
            if j:
                x = _split_value(net.activations[j - 1], f64(loc["z%d" % j]), av)
            else:
                x = _nl.split(av)
            v = _nl.smul((v[0][..., :, None], v[1][..., :, None]), (x[0][..., None, :], x[1][..., None, :]))
        value = _nl.value(v, inp.dtype)
        logv, sign = _nl.log_of(v)
    shape = _grad_shape(gradient)
    out = []
    for arr in (value, logv, sign):
        if inp.batch is not None and arr.ndim == len(shape):
            arr = np.broadcast_to(arr, (inp.batch,) + arr.shape)
        if gradient._entry is not None:
            i, j = gradient._entry
            arr = arr[..., i, j] if arr.ndim - (inp.batch is not None) == 2 else arr[..., i]
            arr = arr[()] if np.ndim(arr) == 0 else arr
        out.append(arr)
    if log_space:
        return tuple(out)
    return out[0]


def _grad_shape(gradient):
    name = re.match(r"[A-Za-z]+\d+", gradient.wrt).group(0)
    return gradient.network.shape(name)
