"""Drawing parameters for a network: the initialisation schemes (normal, uniform, Xavier/Glorot, He/Kaiming, constant)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np

from symgrad.errors import InvalidArgument
from symgrad.symbolic.networks import Chain, Network
from symgrad.numeric.inits import INITS
from symgrad.numeric.inputs import _base_shape, _check_memory, _known_names, _sample_bytes

__all__ = ["INITS", "sample"]


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------

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
    U(0, 1) (a valid cross-entropy target; for ``loss="log_likelihood"`` divided by its sum, a
    probability vector).  ``value`` fixes entries for worked examples: a
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
    if key not in INITS:
        raise InvalidArgument("sample: unknown init %r; known: %s" % (init, ", ".join(INITS)))
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
        if net.loss.on_simplex:  # log_likelihood: a probability target (Σ y = 1), the same draws normalised
            out["y"] = (out["y"] / np.sum(out["y"], axis=-1, keepdims=True)).astype(dtype)
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


