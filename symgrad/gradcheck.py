"""Gradient checks: the closed form against backprop, finite differences and a user's gradients.

Moved out of :mod:`symgrad.numeric` (which does not import this module).
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .errors import GradientCheckError, InvalidArgument
from .networks import Chain
from .numeric import (
    _base_shape,
    _chain_forward,
    _dense_forward,
    _dense_loss,
    _forward_locals,
    _Inputs,
    _known_names,
    _output_delta,
    _validate,
    evaluate_gradient,
)
from . import numeric as _numeric  # backprop is looked up at call time (tests patch numeric.backprop)

__all__ = ["GradientCheckReport", "PrecisionWarning", "TOLERANCES", "Tolerance", "check_gradients"]


# ---------------------------------------------------------------------------------------------
# Gradient checks
# ---------------------------------------------------------------------------------------------


class PrecisionWarning(UserWarning):
    """A gradient check runs in a precision too low for tight finite differences (float32)."""


@dataclass(frozen=True)
class Tolerance:
    """Central-difference step ``eps`` (relative: h = eps·max(1, |p|)) and the tolerance
    ``|x − ref| ≤ atol + rtol·|ref|``, with the closed form as ``ref``."""

    eps: float
    rtol: float
    atol: float


#: Per-dtype defaults, like JAX's ``check_grads`` and PyTorch's ``gradcheck``.  The central
#: difference has truncation error O(h²) and rounding error O(ε_mach·|C|/h): h = 1e-6 balances
#: them for float64 (≈1e-10 relative); float32 (ε ≈ 1.2e-7) needs h ≈ 1e-3 and a 1e-2 rtol.
TOLERANCES = {
    np.dtype(np.float64): Tolerance(eps=1e-6, rtol=1e-5, atol=1e-8),
    np.dtype(np.float32): Tolerance(eps=1e-3, rtol=2e-2, atol=1e-3),
}


@dataclass
class GradientCheckReport:
    """Outcome of :func:`check_gradients`: ``ok``, the names checked, the failures (readable
    lines), and the largest relative error of each comparison, measured as
    ``|x − closed form| / (|closed form| + atol/rtol)``: a comparison passes exactly when it is at
    most ``rtol``, and it stays finite where the closed form is 0."""

    ok: bool
    checked: list
    failures: list
    max_rel_error: dict

    def __str__(self):
        head = "gradient check %s: %d parameters" % ("passed" if self.ok else "FAILED", len(self.checked))
        errs = ", ".join("%s %.2e" % kv for kv in self.max_rel_error.items())
        return "\n".join([head + " (max relative error: " + errs + ")"] + self.failures)


def _entries_for(shape, limit, seed_name):
    """Indices of a parameter checked by finite differences: all, or a fixed random subset."""
    total = int(np.prod(shape)) if shape else 1
    idx = list(np.ndindex(*shape)) if shape else [()]
    if total <= limit:
        return idx
    rng = np.random.default_rng(zlib.crc32(seed_name.encode()))  # the same subset in every run
    pick = rng.choice(total, size=limit, replace=False)
    return [idx[i] for i in sorted(pick)]


def check_gradients(net, params, *, wrt=None, grad_fn=None, eps=None, rtol=None, atol=None,
                    fd_entries=64, raise_on_failure=True) -> GradientCheckReport:
    """Compare the closed form, backprop and central finite differences (and ``grad_fn``).

    * closed form: :func:`evaluate_gradient` of ``net.gradient(name)``;
    * backprop: :func:`backprop`;
    * finite differences: ``(C(p + h) − C(p − h)) / 2h`` with ``h = eps·max(1, |p|)``, per sample
      (a batched parameter is perturbed in every sample at once, since samples are independent);
      at most ``fd_entries`` entries of each array parameter (a fixed random subset);
    * ``grad_fn(params) -> {name: gradient}``: the user's own gradients ("test my backprop"),
      compared with the closed form.

    Tolerances default to :data:`TOLERANCES` for the parameters' dtype (float64: eps=1e-6,
    rtol=1e-5, atol=1e-8).  float32 is supported with looser defaults and a
    :class:`PrecisionWarning`, as PyTorch's gradcheck warns for non-double inputs.  Points at a
    kink (ReLU at 0) make finite differences disagree by design; avoid them.

    On a mismatch raises :class:`GradientCheckError` naming the parameter, the batch index, the
    values and the relative error (or returns the report with ``raise_on_failure=False``).

    >>> import symgrad
    >>> net = symgrad.chain(3, "tanh")
    >>> check_gradients(net, sample(net, 8, seed=0)).ok
    True
    """
    inp = _validate(net, params)
    tol = TOLERANCES[inp.dtype]
    if inp.dtype == np.float32:
        warnings.warn(
            "check_gradients: the parameters are float32; finite differences are only accurate to about "
            "1e-2 there (eps=%g, rtol=%g, atol=%g). Use float64 for a tight check." % (tol.eps, tol.rtol, tol.atol),
            PrecisionWarning,
            stacklevel=2,
        )
    eps = tol.eps if eps is None else float(eps)
    rtol = tol.rtol if rtol is None else float(rtol)
    atol = tol.atol if atol is None else float(atol)
    names = list(net.parameters) if wrt is None else ([wrt] if isinstance(wrt, str) else list(wrt))
    for name in names:
        if name not in net.parameters:
            raise InvalidArgument("check_gradients: unknown parameter %r; known: %s" % (name, _known_names(net)))
    bp = _numeric.backprop(net, params, wrt=names)
    loc = _forward_locals(inp)
    user = None
    if grad_fn is not None:
        user = grad_fn(params)
        if not isinstance(user, Mapping):
            raise InvalidArgument("check_gradients: grad_fn must return a mapping name → gradient, got %s" % type(user).__name__)
        missing = [n for n in names if n not in user]
        if missing:
            raise InvalidArgument("check_gradients: grad_fn returned no gradient for %s" % missing)
    B = inp.batch
    failures, max_rel = [], {"backprop": 0.0, "finite_difference": 0.0}
    if user is not None:
        max_rel["grad_fn"] = 0.0

    def compare(kind, name, got, ref, fd_vals, bp_vals, idx_list=None):
        got = np.broadcast_to(np.asarray(got, dtype=np.float64), np.shape(ref))
        ref = np.asarray(ref, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            err = np.abs(got - ref)
            # err / (|ref| + atol/rtol) is ≤ rtol exactly when err ≤ atol + rtol |ref|, and stays
            # readable where the closed form is 0 (err/|ref| printed 1e307 at a ReLU kink).
            scale = atol / rtol if rtol > 0 else np.finfo(np.float64).tiny
            rel = err / (np.abs(ref) + scale)
            bad = ~(err <= atol + rtol * np.abs(ref))
        finite_rel = rel[np.isfinite(rel)]
        if finite_rel.size:
            max_rel[kind] = max(max_rel[kind], float(finite_rel.max()))
        if not bad.any():
            return
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        bidx = pos[0] if B is not None else None
        entry = pos[1:] if B is not None else pos
        if idx_list is not None:  # finite differences are over a subset of entries
            entry = idx_list[entry[0]] if entry else ()
        label = name + ("[%s]" % ",".join(map(str, entry)) if entry else "")
        vals = {"closed form": ref[pos], "backprop": bp_vals[pos] if bp_vals is not None else float("nan")}
        if fd_vals is not None:
            vals["finite difference"] = fd_vals[pos]
        vals[kind.replace("_", " ")] = got[pos]
        failures.append(
            "%s: ∂C/∂%s%s: %s; relative error %.3e (rtol=%g, atol=%g)"
            % (kind, label, "" if bidx is None else " at batch index %d" % bidx,
               ", ".join("%s = %.17g" % kv for kv in vals.items()), rel[pos], rtol, atol)
        )

    for name in names:
        cf = np.asarray(evaluate_gradient(net.gradient(name), inp, _locals=loc), dtype=np.float64)
        g = np.asarray(bp.grads[name], dtype=np.float64)
        base = _base_shape(net, name)
        entries = _entries_for(base, fd_entries, name)
        fd = _finite_differences(inp, name, entries, eps)
        # Gather the closed form and backprop at the FD entries: shape (B?, len(entries)).
        pick = (lambda a: np.stack([a[(Ellipsis,) + e] if e else a for e in entries], axis=-1)) if base else (lambda a: a)
        cf_sub, bp_sub = pick(cf), pick(g)
        compare("backprop", name, g, cf, None, g)
        compare("finite_difference", name, fd, cf_sub, fd, bp_sub, entries if base else None)
        if user is not None:
            compare("grad_fn", name, user[name], cf, None, g)
    report = GradientCheckReport(not failures, names, failures, max_rel)
    if failures and raise_on_failure:
        shown = failures[:10] + (["… and %d more" % (len(failures) - 10)] if len(failures) > 10 else [])
        raise GradientCheckError("gradient check failed for %d comparison(s):\n  %s" % (len(failures), "\n  ".join(shown)))
    return report


def _loss_of(inp: _Inputs):
    net = inp.net
    if isinstance(net, Chain):
        n = 1 if inp.batch is None else inp.batch
        aL, zL = _chain_forward(inp, 0, n)
        y = np.broadcast_to(inp.block("y", 0, n), (n,))
        loss = np.asarray(_output_delta(net, aL, zL, y)[1], dtype=np.float64)
        return loss if inp.batch is not None else loss[0]
    zs, As = _dense_forward(inp)
    return np.asarray(_dense_loss(inp, zs[-1], As[-1]), dtype=np.float64)


def _finite_differences(inp: _Inputs, name, entries, eps):
    base = inp.values[name]
    out = []
    for e in entries:
        key = (Ellipsis,) + e if e else Ellipsis
        p0 = np.array(base[key], dtype=inp.dtype, copy=True)
        h = (eps * np.maximum(1.0, np.abs(p0))).astype(inp.dtype)
        vals = []
        for sgn in (1.0, -1.0):
            arr = np.array(base, copy=True)
            arr[key] = p0 + sgn * h
            vals.append(_loss_of(inp.replace(name, arr)))
        hh = np.asarray(h, dtype=np.float64)
        # The step actually taken (p ± h rounded) is what divides the difference.
        step = (np.asarray(p0 + h, dtype=np.float64) - np.asarray(p0 - h, dtype=np.float64))
        with np.errstate(divide="ignore", invalid="ignore"):
            d = (vals[0] - vals[1]) / np.where(step != 0, step, 2 * hh)
        out.append(d)
    if not np.shape(base) or not _base_shape(inp.net, name):
        return out[0]
    return np.stack(out, axis=-1)
