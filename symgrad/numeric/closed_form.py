"""Closed forms evaluated: a :class:`symgrad.Gradient`'s factors computed numerically, in linear or log space."""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import sympy

from symgrad.numeric import logspace as _nl
from symgrad.errors import InvalidArgument
from symgrad.symbolic.networks import Chain
from symgrad.numeric.dense import _rescaled_vecmat
from symgrad.numeric.evaluator import _forward_locals
from symgrad.numeric.inputs import _Inputs, _validate
from symgrad.numeric.output import _residual_output, _split_dcost, _split_minus_y
from symgrad.numeric.residual import _sadd, _split_one_plus
from symgrad.numeric.result import SignLog

__all__ = ['evaluate_gradient', 'evaluate_gradients']


# ---------------------------------------------------------------------------------------------
# Closed forms evaluated
# ---------------------------------------------------------------------------------------------

#: Entries of the lambdify cache.  A network needs at most a handful of lambdified factors (only
#: factors that are neither φ', a symbol, nor a_L − y: a loss's ∂C/∂a_L, a scaled residual), so
#: 256 holds those of ~50 networks alive at once; each entry is one compiled function of a few
#: kilobytes (≤ ~1 MB in all).  Least recently used entries go first, so a long-running process
#: that builds networks without end keeps a bounded cache.
LAMBDA_CACHE_SIZE = 256


@lru_cache(maxsize=LAMBDA_CACHE_SIZE)
def _lambdified(expr):
    """One lambdify (with common-subexpression elimination) per distinct factor expression.

    Returns ``(symbols, function)``; raises :class:`~symgrad.InvalidArgument` (not cached) for a
    symbol or function name that is not a plain identifier."""
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
    return syms, sympy.lambdify(syms, expr, modules="numpy", cse=True)


def evaluate_gradient(gradient, params, *, log_space=False, _locals=None):
    """Evaluate a closed-form :class:`symgrad.Gradient` numerically, factor by factor.

    Each factor of ``gradient.factors`` is evaluated from the forward pass's local values
    (``φ'(z_j)`` by the activation's stable kernel at z_j; symbols by their values; any other
    factor, such as ``a_L − y``, through one ``lambdify(..., cse=True)``) and the factors are
    multiplied in chain order.  The network is never composed into one expression.

    * ``gradient``: ``net.gradient(name)`` (else :class:`~symgrad.InvalidArgument`);
    * ``params``: the network's parameter mapping (validated as :func:`~symgrad.numeric.backprop`
      validates it: :class:`~symgrad.InvalidArgument` names a missing, misshapen or non-finite entry);
    * returns the gradient's value, shape ``(B,) + shape(name)`` when batched, else ``shape(name)``
      (a NumPy scalar for a chain).

    With ``log_space=True`` returns ``(value, SignLog(sign, log_abs))``: the log-space part in
    :func:`numpy.linalg.slogdet` order, ``log_abs = ln|value|`` being the sum of the factors'
    ``ln|·|`` (finite where ``value`` over- or underflows).  The factors are Nielsen's BP1–BP2
    unrolled (*Neural Networks and Deep Learning*, ch. 2, "the four fundamental equations").

    >>> import numpy as np, symgrad
    >>> from symgrad.numeric import backprop, evaluate_gradient, evaluate_gradients, sample
    >>> net = symgrad.chain(3)
    >>> p = sample(net, 5, seed=1)
    >>> g = evaluate_gradient(net.gradient("w2"), p)
    >>> bool(np.allclose(g, backprop(net, p).grads["w2"]))
    True
    >>> value, (sign, log_abs) = evaluate_gradient(net.gradient("w2"), p, log_space=True)
    >>> bool(np.allclose(sign * np.exp(log_abs), value))
    True
    """
    from symgrad.symbolic.derivation import Gradient

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
    if inp.alpha_values and name in inp.alpha_values:  # a residual layer's symbolic α
        return np.float64(inp.alpha_values[name])
    return loc[name]


def _scalar_value(c, inp):
    """A scalar coefficient of a factor (a number, a residual layer's α Symbol, or a product of
    them) as a float64; its symbols take their values from ``params`` (never parsed)."""
    if not c.free_symbols:
        return np.float64(float(c))
    vals = {q: sympy.Float(_sym_value(q.name, inp, {})) for q in c.free_symbols}
    return np.float64(float(c.xreplace(vals)))


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
    if _residual_output(net):  # a_L = a_{L−1} + α φ(z_L): a_L − y from a_L itself, not the logit
        return _nl.split_diff(al, yv)
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

    >>> import numpy as np, symgrad
    >>> from symgrad.numeric import backprop, evaluate_gradient, evaluate_gradients, sample
    >>> net = symgrad.chain(3)
    >>> p = sample(net, 4, seed=1)
    >>> got = evaluate_gradients([net.gradient(n) for n in net.parameters], p)
    >>> all(np.allclose(g, backprop(net, p).grads[n], rtol=1e-12, atol=0) for g, n in zip(got, net.parameters))
    True
    """
    from symgrad.symbolic.derivation import Gradient, _chain_sequence

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
    from symgrad.spec.activations import ActivationPrime

    if isinstance(f, ActivationPrime):
        zv = np.atleast_1d(np.asarray(_sym_value(f.args[0].name, inp, loc), dtype=np.float64))
        return _nl.split_grad(f._activation, zv)
    if isinstance(f, sympy.Symbol):
        v = np.atleast_1d(np.asarray(_sym_value(f.name, inp, loc), dtype=np.float64))
        j = _layer_of(f.name)
        if f.name.startswith("a") and j:  # an activation: from its log where it underflowed
            zv = np.atleast_1d(np.asarray(loc["z%d" % j], dtype=np.float64))
            return _nl.split_value(net.activations[j - 1], zv, v)
        return _nl.split(v)
    if isinstance(f, sympy.Number):
        return _nl.split(np.atleast_1d(np.float64(float(f))))
    if isinstance(f, sympy.Mul) and not f.free_symbols & {net.symbols["y"]}:
        # a product of factors (α w_k φ'(z_k)): each factor evaluated as above, multiplied as m·2^k
        acc = None
        for g in f.args:
            x = _split_factor(g, net, inp, loc)
            acc = x if acc is None else _nl.smul(acc, x)
        return acc
    if isinstance(f, sympy.Add) and any(t == 1 for t in f.args):
        # a residual layer's transfer 1 + α_k w_k φ'(z_k): x as m·2^k, then 1 + x (x where |x| ≥ 2^1000)
        rest = sympy.Add(*[t for t in f.args if t != 1])
        return _split_one_plus(_split_factor(rest, net, inp, loc))
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
        return value, SignLog(sign, logv)
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
    """A matrix-expression factor as (B?, rows, cols) arrays (vectors as (B?, n, 1)); a bare Σ'(z)
    as ``("diag", φ'(z)[..., None])``.  The walk is the symbolic side's
    (:func:`symgrad.symbolic.derivation._walk_matrix_factor`) with NumPy leaves."""
    from symgrad.symbolic.derivation import ActivationJacobian, _walk_matrix_factor

    def leaf(g):
        if isinstance(g, sympy.MatrixSymbol):
            v = np.asarray(_sym_value(g.name, inp, loc))
            return v if g.name.startswith("W") else v[..., :, None]
        if isinstance(g, ActivationJacobian):
            return ("diag", g._activation.grad(np.asarray(_sym_value(g.args[0].name, inp, loc)))[..., :, None])
        a, y = _sym_value(g.args[0].name, inp, loc), _sym_value(g.args[1].name, inp, loc)  # CostGradient
        return (g._loss.dvalue(a, y))[..., :, None]

    return _walk_matrix_factor(f, leaf, transpose=lambda m: np.swapaxes(m, -1, -2), add=lambda x, y: x + y,
                              matmul=np.matmul, scale=lambda c, m: float(c) * m)


def _dense_vector_factor(f, inp, loc):
    """A vector-valued factor (∂C/∂a^L, a^L − y) as m·2^k of shape (…, n), or None."""
    from symgrad.symbolic.derivation import CostGradient

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
                return _split_dcost(f._loss, out, al, zl, y)
            # exactly the two terms a^L and −y (structurally: nothing is simplified)
            if isinstance(f, sympy.MatAdd) and sorted(str(t) for t in f.args) == sorted(["a%d" % L, "-y"]):
                if _residual_output(net):  # a^L = a^{L−1} + α φ(z^L): from a^L itself, not the logit
                    return _nl.split_diff(al, y)
                # a^L − y (σ(z^L) − y from the logit for a sigmoid output, as every path forms it)
                return _split_minus_y(out, al, zl, y)
    return None


def _eval_dense_factors(gradient, inp, loc, log_space):
    """Right to left, every product a matrix times a vector, carried as m·2^k per entry as in
    :func:`_dense_backprop`: no partial product overflows or underflows, and each entry is
    rounded once at the end."""
    from symgrad.symbolic.derivation import ActivationJacobian

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
                x = _nl.split_grad(f._activation, f64(_sym_value(f.args[0].name, inp, loc)))
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
            elif isinstance(f, (sympy.MatAdd, sympy.MatMul)):
                # a residual layer's I + α W_lᵀ Σ'(z^l), or its α Σ'(z^l): applied to v as m·2^k
                try:
                    v = _apply_scaled(f, v, inp, loc)
                    continue
                except _NotScaled:
                    pass
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
                x = _nl.split_value(net.activations[j - 1], f64(loc["z%d" % j]), av)
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
        return out[0], SignLog(out[2], out[1])
    return out[0]


class _NotScaled(Exception):
    """A matrix factor :func:`_apply_scaled` does not apply; it is evaluated as a matrix instead."""


def _apply_scaled(f, v, inp, loc):
    """The matrix factor ``f`` applied to the vector v = (M, E) without forming a matrix:
    I → v, Σ'(z) → φ'(z) ⊙ v, W_lᵀ → W_lᵀ v (:func:`_rescaled_vecmat`), a product right to left
    times its scalar coefficient (a number or α), a sum entry by entry (:func:`_sadd`)."""
    from symgrad.symbolic.derivation import ActivationJacobian

    f64 = lambda x: np.asarray(x, dtype=np.float64)  # noqa: E731
    if isinstance(f, sympy.Identity):
        return v
    if isinstance(f, ActivationJacobian):
        return _nl.smul(_nl.split_grad(f._activation, f64(_sym_value(f.args[0].name, inp, loc))), v)
    if isinstance(f, sympy.Transpose) and isinstance(f.arg, sympy.MatrixSymbol) and f.arg.name.startswith("W"):
        name = f.arg.name
        return _rescaled_vecmat(v, f64(_sym_value(name, inp, loc)), inp.batched.get(name, False))
    if isinstance(f, sympy.MatMul):
        coeff, mats = f.as_coeff_matrices()
        for m in reversed(mats):
            v = _apply_scaled(m, v, inp, loc)
        if coeff != 1:
            v = _nl.smul(_nl.split(_scalar_value(coeff, inp)), v)
        return v
    if isinstance(f, sympy.MatAdd):
        out = None
        for t in f.args:
            x = _apply_scaled(t, v, inp, loc)
            out = x if out is None else _sadd(out, x)
        return out
    raise _NotScaled()


def _grad_shape(gradient):
    name = re.match(r"[A-Za-z]+\d+", gradient.wrt).group(0)
    return gradient.network.shape(name)
