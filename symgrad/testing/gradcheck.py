"""Gradient checks: the closed form against backprop, finite differences and a user's gradients.

(Moved out of :mod:`symgrad.numeric`, which does not import this module.)

Every comparison has a tolerance that comes from an error model, computed per entry and per
sample at the point checked; nothing is fitted to one CPU's rounding.

Closed form vs backprop — a running error bound
    Both evaluate ``∂C/∂p`` in the parameters' dtype (unit roundoff ``u``, 2⁻⁵³ or 2⁻²⁴).  A
    forward pass in floating point has, to first order, the componentwise error
    ``dz_l ≤ |W_l|·da_{l−1} + (n_{l−1} + 1)·u·(|W_l||a_{l−1}| + |b_l|)`` (a dot product of length
    n plus a bias: γ_{n+1}), ``da_l ≤ max|φ'|·dz_l + c·u·|a_l|``, where ``c = 8`` (the stable
    kernels φ, φ' are within 4 ulps: expit, log1p, erf, tanh are correctly rounded to ≤ 1 ulp and
    each kernel adds at most three roundings).  The factor φ'(z_l) is then off by at most
    ``ΔP_l = max|φ'(z_l ± dz_l) − φ'(z_l)| + c·u·|φ'(z_l)|`` (absolute: a ReLU whose z lies within
    rounding of its kink can legitimately give 0 in one evaluation and 1 in the other), and the
    cost factor ∂C/∂a_L by its first-order perturbation, ``a_L − y`` by ``da_L + u(|a_L| + |y|)``
    (absolute, because it cancels).  Backpropagating *absolute values* gives the magnitude
    ``M`` of each gradient entry (no cancellation in a sum can hide), and backpropagating the
    perturbed magnitudes ``|φ'| + ΔP`` gives ``M⁺ ≥ M``.  With ``K`` the number of roundings on
    the way back (``Σ_k (n_k + 2) + 4``, plus the logarithms that the dense backprop takes), the
    error of either evaluation is bounded by ``E = M⁺(1 + K·u) − M`` (+ K times the smallest
    subnormal, for underflow); the two may differ by ``2E``.  Where z_l is within dz_l of a kink,
    ΔP_l is a whole jump and E says so: that comparison is then too ill-conditioned to decide.

Closed form vs finite differences — Richardson extrapolation in float64
    The loss is evaluated in float64 even for float32 parameters (the float32 point is exactly
    representable), so finite differences check the *formula*, not float32's noise.  Central
    differences ``F(t) = (C(p + t) − C(p − t)) / (step actually taken)`` at ``t = h, h/2, h/4,
    h/8`` with ``h = eps·max(1, |p|)`` have ``F(t) = C' + a t² + b t⁴ + …``;
    ``R₁ = (4F(h/4) − F(h/2))/3`` and ``R₂ = (4F(h/8) − F(h/4))/3`` remove the t² term, and
    ``|R₂ − R₁|`` bounds R₂'s truncation error (R₁'s is 16× R₂'s in the asymptotic regime: a
    factor 15 of margin).  Rounding: each loss value carries at most
    ``e_C = |∂C/∂a_L|·(da_L + u(|a_L| + |y|)) + (16 + n_L)·u·Σ|terms of C|`` (the forward bound
    above, float64, evaluated at that very point: a loss that is 0 at p is not 0 at p ± t), so
    ``F(t)`` is off by ``(e_C(p+t) + e_C(p−t)) / step`` and R₂ by ``(4ρ(h/8) + ρ(h/4))/3``.  The
    finite difference passes when ``|R₂ − cf| ≤ |R₂ − R₁| + rounding + E_cf`` (``E_cf``: the
    closed form's own bound in its dtype, without the jumps of φ' at kinks, which the kink rule
    below handles).  The default ``eps = 1e-3`` balances the t⁴ truncation against the
    ``u|C|/t`` rounding (optimum ≈ u^{1/5} ≈ 7e-4).
    *Asymptotic regime:* the differences ``d_i = F(t_i) − F(t_i/2)`` must keep their sign with
    ``3 ≤ d_i/d_{i+1} ≤ 17`` (4 where a dominates, 16 where b does; 2 would be an O(t) error,
    where φ'' jumps within t), or lie within rounding.  Otherwise the ladder is repeated at
    ``h/16, h/256, …`` down to ``eps·16⁻⁷`` (a steep chain, |∂C/∂b₁| = 2²⁶ while C ≤ ½, needs it).
    *Kinks:* if p sits on a kink (ReLU at exactly 0), the one-sided differences at t = h/8 differ
    by more than a smooth function allows (``2(tr + tl) + rr + rl``: their truncation estimates,
    the change from h/4, and their rounding bounds), and any value between them (within those
    errors) passes: the left derivative, the right one, or a subgradient.
    *Kinks near p:* a ladder whose points move some z_l of a kinked layer (ReLU, leaky ReLU, ELU,
    softsign, or a custom activation with abs/Heaviside/max/Piecewise; kinks at z = 0) across 0,
    where it was not 0 at p, straddles a kink that is not at p, and a smaller h is taken.  If no
    ladder down to eps·16⁻⁷ settles, the entry is *undecided* (``report.undecided``): it does
    not fail, since finite differences cannot resolve kinks that close (a deep leaky-ReLU net
    with zero biases has |z_12| ~ 1e-20); closed form vs backprop still decides it.  So is a
    direction that moves two or more units off a kink they sit on exactly (a dense ReLU layer
    whose inputs are all 0: z = b = 0): the one-sided derivatives then mix branches, while the
    convention φ'(0) = left derivative takes every such unit as inactive.

User's gradients (``grad_fn``)
    Compared with the closed form as ``|g − cf| ≤ atol + rtol·|cf| + E_cf``: ``rtol`` and ``atol``
    (:data:`TOLERANCES`) are the user's contract for their own code's rounding.

Fast mode (``fast=True``)
    Instead of every entry, ``directions`` random directions ``v = s⊙ξ/‖ξ‖`` (ξ standard
    Gaussian over all the P entries checked, ``s = max(1, |p|)`` per entry, seeded), the same
    ladders along v, compared with ``⟨cf, v⟩`` within ``⟨E_cf, |v|⟩`` + the dot product's
    rounding + the rounding of p + t·v (``⟨backprop, v⟩`` is shown alongside).  Cost:
    ``8·directions + 1`` loss evaluations per ladder instead of ``8·P + 1``: O(L) forward work
    instead of O(L²).  Detection: for a wrong gradient with error vector e, ``⟨e, v⟩ =
    ⟨s⊙e, ξ⟩/‖ξ‖`` where ``⟨s⊙e, ξ⟩`` is N(0, ‖s⊙e‖²) and ‖ξ‖ ≈ √P, so it lands within the
    tolerance τ with probability about ``√(2/π)·τ√P/‖s⊙e‖`` or less per direction, and k
    independent directions all miss with that to the power k: below 1e-8 for k = 4 once
    ``‖s⊙e‖ ≥ 100·τ·√P``.
"""

from __future__ import annotations

import math
import numbers
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from symgrad.errors import GradientCheckError, InvalidArgument, PrecisionWarning
from symgrad.symbolic.networks import Chain
from symgrad import numeric as _numeric  # backprop is looked up at call time (tests patch numeric.backprop)
from symgrad.interop import pytorch as _interop  # PyTorch modules (imported only when one is checked)
from symgrad.numeric.chain import _chain_forward
from symgrad.numeric.closed_form import evaluate_gradients
from symgrad.numeric.dense import _dense_forward, _dense_loss
from symgrad.numeric.evaluator import _forward_locals
from symgrad.numeric.inputs import _base_shape, _Inputs, _known_names, _validate
from symgrad.numeric.output import _cost_from_logit, _output_delta

__all__ = ["GradientCheckReport", "PrecisionWarning", "TOLERANCES", "Tolerance", "check_gradients"]


@dataclass(frozen=True)
class Tolerance:
    """``eps``: the largest finite-difference step, relative (``h = eps·max(1, |p|)``; the
    Richardson ladder is h, h/2, h/4, h/8); ``rtol``, ``atol``: the contract for a user's ``grad_fn``,
    ``|g − cf| ≤ atol + rtol·|cf| + E_cf``.  Backprop and finite differences get tolerances from
    the error model (module docstring), not from this table.  All three are dimensionless
    (relative) except ``atol``, in the gradient's units.  One per dtype in :data:`TOLERANCES`.

    >>> import numpy as np
    >>> TOLERANCES[np.dtype(np.float64)]
    Tolerance(eps=0.001, rtol=1e-05, atol=1e-08)
    """

    eps: float
    rtol: float
    atol: float


#: Per-dtype defaults.  ``eps`` is the same for both: the finite differences always run in float64.
#: ``rtol``/``atol`` bound a user's gradients only (their code's rounding is unknown to the error
#: model, which adds the closed form's own bound E_cf on top): 1e-5 in float64, where a correct
#: hand-written backprop of depth L is off by ≈ 3L·u ≈ 1e-13 at L = 100, so 1e-5 is that with a
#: wide margin for cancellation; 1e-3 in float32 (u = 6e-8: 3L·u ≈ 2e-5 at L = 100, the same
#: margin of ~50).
TOLERANCES = {
    np.dtype(np.float64): Tolerance(eps=1e-3, rtol=1e-5, atol=1e-8),
    np.dtype(np.float32): Tolerance(eps=1e-3, rtol=1e-3, atol=1e-6),
}

_KERNEL_U = 8.0  # φ, φ' kernels: within 4 ulps = 8 u (module docstring)
_WORST = 5


@dataclass
class GradientCheckReport:
    """Outcome of :func:`check_gradients`.

    ``ok``; ``checked`` (parameter names); ``failures`` (one readable line per comparison and
    parameter that failed); ``max_rel_error``: per comparison, the largest
    ``|x − cf| / (|cf| + atol/rtol)`` (readable where cf = 0); ``max_ratio``: the largest
    ``|x − cf| / tolerance`` (≤ 1 passes); ``census``: per comparison, ``(failing, checked)``
    entry counts; ``worst``: the worst failing entries (at most 5), each a dict with ``kind``,
    ``param``, ``index``, ``batch``, ``closed_form``, ``backprop``, ``finite_difference``,
    ``value``, ``rel_error``, ``tolerance``; ``step``: the finite-difference steps used; ``mode``:
    ``"entries"`` or ``"fast"``; ``details[(kind, name)]``: every comparison's arrays, shape
    (batch, entries): ``value``, ``closed_form``, ``tolerance``, ``failed`` (a boolean mask), and
    ``index`` (the entries);
    ``undecided``: per comparison, how many entries the finite differences could not decide
    (no step down to eps·16⁻⁷ reached the asymptotic regime and no single kink explains it:
    kinks closer to p than any step, as in a deep ReLU net whose z vanish); they do not fail.

    >>> import symgrad
    >>> from symgrad.numeric import sample
    >>> net = symgrad.chain(2)
    >>> r = check_gradients(net, sample(net, 3, seed=0))
    >>> r.ok, r.checked
    (True, ['w1', 'w2', 'b1', 'b2'])
    """

    ok: bool
    checked: list
    failures: list
    max_rel_error: dict
    max_ratio: dict = field(default_factory=dict)
    census: dict = field(default_factory=dict)
    worst: list = field(default_factory=list)
    step: str = ""
    mode: str = "entries"
    details: dict = field(default_factory=dict, repr=False)
    undecided: dict = field(default_factory=dict)

    def summary(self) -> str:
        """One line: per comparison, failing of checked entries, then the steps used.

        >>> import symgrad
        >>> from symgrad.numeric import sample
        >>> net = symgrad.chain(2)
        >>> check_gradients(net, sample(net, 3, seed=0)).summary().startswith("failing entries: backprop 0 of 12")
        True
        """
        parts = ["%s %d of %d" % (k, f, n) for k, (f, n) in self.census.items()]
        return "failing entries: %s; %s" % (", ".join(parts), self.step)

    def __str__(self):
        head = "gradient check %s: %d parameters" % ("passed" if self.ok else "FAILED", len(self.checked))
        errs = ", ".join("%s %.2e" % kv for kv in self.max_rel_error.items())
        lines = [head + " (max relative error: " + errs + ")"]
        if any(self.undecided.values()):
            lines.append("undecided (finite differences cannot resolve kinks this close to p): %s"
                         % ", ".join("%s %d" % kv for kv in self.undecided.items() if kv[1]))
        if not self.ok:
            lines.append(self.summary())
        return "\n".join(lines + self.failures)


# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------


def _real(name, value, *, positive=False, allow_none=True, upper=None):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgument("check_gradients: %s=%r must be a real number%s" % (name, value, " or None for the default" if allow_none else ""))
    v = float(value)
    if not math.isfinite(v) or (v <= 0 if positive else v < 0) or (upper is not None and v > upper):
        need = "> 0" if positive else ">= 0"
        if upper is not None:
            need += " and <= %g" % upper
        raise InvalidArgument("check_gradients: %s=%r must be finite and %s" % (name, value, need))
    return v


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidArgument("check_gradients: %s=%r must be a positive int" % (name, value))
    return int(value)


def _names_to_check(net, wrt):
    if wrt is None:
        return list(net.parameters)
    names = [wrt] if isinstance(wrt, str) else wrt
    try:
        names = list(names)
    except TypeError:
        raise InvalidArgument("check_gradients: wrt=%r must be a parameter name or a list of them; known: %s" % (wrt, _known_names(net))) from None
    if not names:
        raise InvalidArgument("check_gradients: wrt=%r names no parameter; known: %s" % (wrt, _known_names(net)))
    out = []
    for name in names:
        if not isinstance(name, str) or name not in net.parameters:
            raise InvalidArgument("check_gradients: unknown parameter %r; known: %s" % (name, _known_names(net)))
        if name not in out:
            out.append(name)
    return out


# ---------------------------------------------------------------------------------------------
# The error model (module docstring): forward bounds, absolute-value backprop
# ---------------------------------------------------------------------------------------------


def _layers(inp: _Inputs):
    """Every network as dense layers in float64 with an explicit batch axis n:
    W_l (n, out, in), b_l (n, out), a0 (n, n0), y (n, nL)."""
    net = inp.net
    n = 1 if inp.batch is None else inp.batch
    f = lambda k: np.asarray(inp.values[k], dtype=np.float64)  # noqa: E731
    if isinstance(net, Chain):
        sh = lambda v, extra: np.broadcast_to(v, (n,)).reshape((n,) + extra)  # noqa: E731
        Ws = [sh(f("w%d" % j), (1, 1)) for j in range(1, net.depth + 1)]
        bs = [sh(f("b%d" % j), (1,)) for j in range(1, net.depth + 1)]
        return Ws, bs, sh(f("a0"), (1,)), sh(f("y"), (1,))
    Ws = [np.broadcast_to(f("W%d" % l), (n,) + net.shape("W%d" % l)) for l in range(1, net.depth + 1)]
    bs = [np.broadcast_to(f("b%d" % l), (n,) + net.shape("b%d" % l)) for l in range(1, net.depth + 1)]
    return Ws, bs, np.broadcast_to(f("a0"), (n, net.widths[0])), np.broadcast_to(f("y"), (n, net.widths[-1]))


class _ErrorModel:
    """First-order error bounds at one point, for unit roundoff ``u`` (module docstring)."""

    def __init__(self, inp: _Inputs, u: float, backward: bool = True):
        net = inp.net
        Ws, bs, a0, y = _layers(inp)
        L = net.depth
        tiny = float(np.finfo(inp.dtype).smallest_subnormal)
        alphas = [None if v is None else float(v) for v in inp.alphas] if inp.alphas is not None else [None] * L
        with np.errstate(all="ignore"):
            a, da = a0, np.zeros_like(a0)
            As, dAs, fps, dPs, zs, dzs, dPs_smooth = [a0], [da], [], [], [], [], []
            for l in range(L):
                act = net.activations[l]
                W, aW = Ws[l], np.abs(Ws[l])
                z = np.einsum("nij,nj->ni", W, a) + bs[l]
                m = W.shape[-1]
                dz = np.einsum("nij,nj->ni", aW, da) + (m + 1) * u * (np.einsum("nij,nj->ni", aW, np.abs(a)) + np.abs(bs[l]))
                fp = act.grad(z)
                fp_lo, fp_hi = act.grad(z - dz), act.grad(z + dz)
                change = np.maximum(np.abs(fp_lo - fp), np.abs(fp_hi - fp))
                # A jump (a kink within rounding of z): φ' changes by more than 1e4·dz over dz
                # (a smooth piece changes by |φ''|·dz, and |φ''| ≤ 2 for every built-in) and by
                # more than 1e-6 of itself.
                jump = (change > 1e4 * dz) & (change > 1e-6 * np.maximum(np.abs(fp), np.maximum(np.abs(fp_lo), np.abs(fp_hi))))
                dP = change + _KERNEL_U * u * np.abs(fp)
                dPs_smooth.append(np.where(jump, 0.0, change) + _KERNEL_U * u * np.abs(fp))
                a = act.value(z)
                da = np.maximum(np.abs(fp), np.maximum(np.abs(fp_lo), np.abs(fp_hi))) * dz + _KERNEL_U * u * np.abs(a)
                if act.output_only:
                    # softmax couples the units (Jacobian diag(a) − a aᵀ, of which act.grad is the
                    # diagonal): Δa_i ≤ a_i(Δz_i + Σ_j a_j Δz_j), and e^{fl(z_i − max z)} adds a_i u(|z_i| + max|z|)
                    zmax = np.max(np.abs(z), axis=-1, keepdims=True)
                    da = np.maximum(da, a * (dz + np.sum(a * dz, axis=-1, keepdims=True)) + u * a * (_KERNEL_U + 2.0 * (np.abs(z) + zmax)))
                if alphas[l] is not None:
                    # a residual layer a_l = a_{l−1} + α φ(z_l): the skip carries a_{l−1}'s error, α φ
                    # adds |α| times φ's, and the product and the sum round once each
                    al = alphas[l]
                    phi_a = al * a
                    a = As[-1] + phi_a
                    da = dAs[-1] + abs(al) * da + u * (np.abs(phi_a) + np.abs(a))
                zs.append(z), dzs.append(dz), fps.append(fp), dPs.append(dP), As.append(a), dAs.append(da)
            aL, daL, zL, dzL = As[-1], dAs[-1], zs[-1], dzs[-1]
            cost = net.loss
            err_ay = daL + u * (np.abs(aL) + np.abs(y))
            res_out = alphas[-1] is not None
            if res_out:
                # a residual output (quadratic cost): g_L = ∂C/∂a_L = a_L − y, δ_L = α φ'(z_L) g_L
                G = np.abs(aL - y)
                Gp = G + err_ay
                ca = abs(alphas[-1])
                D, Dp = ca * np.abs(fps[-1]) * G, ca * (np.abs(fps[-1]) + dPs[-1]) * Gp
                Dps = ca * (np.abs(fps[-1]) + dPs_smooth[-1]) * Gp
                dCdz = D
                per = 0.5 * np.square(aL - y)
                loss_mag = per
            elif cost.cancels_with(net.activations[-1]):
                D = np.abs(aL - y)
                Dp = D + err_ay
                Dps = Dp
                dCdz = D
                per = _cost_from_logit(zL, y)
                loss_mag = np.abs(per) + np.abs(zL) * (1.0 + np.abs(y)) + 1.0
            elif cost.domain_open_unit:
                den = np.abs(aL * (1.0 - aL))
                G = np.abs(aL - y) / den
                rel_den = (daL + u * np.abs(aL)) / np.abs(aL) + (daL + u) / np.abs(1.0 - aL) + 3 * u
                Gp = (np.abs(aL - y) + err_ay) / den * (1.0 + rel_den)
                D, Dp = np.abs(fps[-1]) * G, (np.abs(fps[-1]) + dPs[-1]) * Gp
                Dps = (np.abs(fps[-1]) + dPs_smooth[-1]) * Gp
                dCdz = D
                per = -(y * np.log(aL) + (1.0 - y) * np.log1p(-aL))
                loss_mag = np.abs(y * np.log(aL)) + np.abs((1.0 - y) * np.log1p(-aL))
            else:
                G = np.abs(aL - y)
                Gp = G + err_ay
                D, Dp = np.abs(fps[-1]) * G, (np.abs(fps[-1]) + dPs[-1]) * Gp
                Dps = (np.abs(fps[-1]) + dPs_smooth[-1]) * Gp
                dCdz = D
                per = 0.5 * np.square(aL - y)
                loss_mag = per
            n_out = aL.shape[-1]
            # e_C: one loss value's error — its first-order sensitivity to the error of a_L − y
            # (or of z_L, for the loss computed from the logit), and (16 + n_L)·u of the
            # magnitudes it is summed from (each term a few roundings, the sum n_L more).
            sens = dCdz * dzL if cost.cancels_with(net.activations[-1]) and not res_out else G * err_ay
            self.e_loss = np.sum(sens, axis=-1) + (16 + n_out) * u * np.sum(loss_mag, axis=-1)
            self.u, self.tiny, self.inp = u, tiny, inp
            if not backward:
                return
            # Backward: absolute values, plain and perturbed; K counts roundings from layer L down.
            # Mps: the same with the jumps left out (the finite differences see a kink within
            # rounding of p as a kink at p, and judge it by the one-sided differences).
            self.M, self.Mp, self.Mps, self.K = {}, {}, {}, {}
            # K: roundings on the way back, per sample (the largest over a layer's units): the
            # cost factor and δ_L (4); per layer down, Wᵀδ (a sum of n_{l+1} terms: γ_{n+1}) and the
            # φ' product (1); the dense backprop also goes through logarithms, δ = exp(ℓ), and
            # ℓ = log|φ'| + log|Wᵀv| + log-scale carries u·(|log|φ'|| + 2|log δ| + 4) per layer.
            K = np.full((D.shape[0], 1), 4.0)
            dense = not isinstance(net, Chain)
            # Residual networks also carry g_l = ∂C/∂a_l (plain, perturbed, smooth): g_{l} =
            # |W_{l+1}|ᵀ δ_{l+1} + r_{l+1} g_{l+1} and δ_l = |c_l| |φ'_l| g_l (numeric/residual.py).
            Gr = (G, Gp, Gp) if res_out else None
            for l in range(L - 1, -1, -1):
                if l < L - 1 and inp.alphas is not None:
                    aWt = np.abs(Ws[l + 1])
                    up = alphas[l + 1] is not None
                    Gn = [np.einsum("nij,ni->nj", aWt, X) + (Gr[i] if up else 0.0) for i, X in enumerate((D, Dp, Dps))]
                    Gr = tuple(Gn)
                    cl = 1.0 if alphas[l] is None else abs(alphas[l])
                    D = cl * np.abs(fps[l]) * Gr[0]
                    Dp = cl * (np.abs(fps[l]) + dPs[l]) * Gr[1]
                    Dps = cl * (np.abs(fps[l]) + dPs_smooth[l]) * Gr[2]
                    K = K + Ws[l + 1].shape[1] + 2 + (3 if up else 0)
                elif l < L - 1:
                    aWt = np.abs(Ws[l + 1])
                    D = np.abs(fps[l]) * np.einsum("nij,ni->nj", aWt, D)
                    Dp = (np.abs(fps[l]) + dPs[l]) * np.einsum("nij,ni->nj", aWt, Dp)
                    Dps = (np.abs(fps[l]) + dPs_smooth[l]) * np.einsum("nij,ni->nj", aWt, Dps)
                    K = K + Ws[l + 1].shape[1] + 2
                if dense:
                    logs = 2 * np.abs(np.log(np.where(Dp > 0, Dp, 1.0))) + np.abs(np.log(np.where(fps[l] != 0, np.abs(fps[l]), 1.0))) + 4
                    K = K + np.max(logs, axis=-1, keepdims=True)
                bn, wn = self._names(net, l)
                self.M[bn], self.Mp[bn], self.Mps[bn], self.K[bn] = D, Dp, Dps, np.broadcast_to(K, D.shape)
                self.Mps[wn] = Dps[:, :, None] * (np.abs(As[l]) + dAs[l])[:, None, :]
                self.M[wn] = D[:, :, None] * np.abs(As[l])[:, None, :]
                self.Mp[wn] = Dp[:, :, None] * (np.abs(As[l]) + dAs[l])[:, None, :]
                self.K[wn] = K[:, :, None] + 1

    @staticmethod
    def _names(net, l):
        if isinstance(net, Chain):
            return "b%d" % (l + 1), "w%d" % (l + 1)
        return "b%d" % (l + 1), "W%d" % (l + 1)

    def bound(self, name, smooth=False):
        """E: the bound on |computed − exact| of ∂C/∂name, shaped like the gradient
        ((B,) + shape, or shape when nothing is batched); ``smooth``: without the jumps of φ'
        at kinks within rounding of z."""
        with np.errstate(all="ignore"):
            M, Mp, K = self.M[name], (self.Mps if smooth else self.Mp)[name], self.K[name]
            E = Mp * (1.0 + K * self.u) - M + K * self.tiny
            E = np.where(np.isnan(E), np.inf, E)
        return self._shape(name, E)

    def _shape(self, name, arr):
        net = self.inp.net
        base = () if isinstance(net, Chain) else net.shape(name)
        arr = arr.reshape((arr.shape[0],) + base)
        return arr if self.inp.batch is not None else arr[0]


# ---------------------------------------------------------------------------------------------
# Losses at many perturbed points at once (float64)
# ---------------------------------------------------------------------------------------------


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


_CHUNK_ELEMENTS = 1 << 21  # parameter values per batched loss evaluation (16 MiB of float64)


def _has_kink(act) -> bool:
    """φ' or φ'' jumps somewhere (ReLU, leaky ReLU, ELU, SELU, softsign, a custom abs/max/Heaviside):
    the activation's own fact (Activation.has_kink)."""
    return act.has_kink


def _kink_signs(net, loc, kinked):
    """sign(z_l) of the layers with a kink, side by side: (batch, units)."""
    return np.concatenate([np.reshape(np.sign(loc["z%d" % (l + 1)]), (np.shape(loc["loss"])[0] if np.ndim(loc["loss"]) else 1, -1))
                           for l in kinked], axis=1)


def _losses(net, base, n, perts, kinked=(), ref_signs=None):
    """Losses at ``base`` (name → float64 (n,) + shape) moved by each of ``perts`` (a list of
    name → (key, new values): ``arr[key] = new``, key None for the whole array; {} for the point
    itself), the bound on each one's rounding error, and whether it moved a z_l of a kinked layer
    (``kinked``) across 0 where it was not 0 at p (``ref_signs``, (n, units)), and how many
    such z_l that were exactly 0 at p it moved off 0: four arrays (len(perts), n).  The moved points are stacked along the batch axis, so one forward pass
    evaluates a whole chunk of them.  Built-in activations have their kinks at z = 0; a custom
    activation with a kink elsewhere is not tracked."""
    size = sum(v[0].size for v in base.values() if np.ndim(v)) * n
    per_chunk = max(1, _CHUNK_ELEMENTS // max(size, 1))
    out, err = np.empty((len(perts), n)), np.empty((len(perts), n))
    crossed = np.zeros((len(perts), n), dtype=bool)
    woken = np.zeros((len(perts), n), dtype=np.int64)
    for s in range(0, len(perts), per_chunk):
        chunk = perts[s:s + per_chunk]
        k = len(chunk)
        params, movers = {}, {}
        for i, p in enumerate(chunk):
            for name in p:
                movers.setdefault(name, []).append(i)
        for name, v in base.items():
            if np.ndim(v) == 0:  # a residual layer's symbolic α: one float, never perturbed
                params[name] = float(v)
                continue
            moved = movers.get(name, ())
            if not moved and k == 1:
                params[name] = v
                continue
            arr = np.broadcast_to(v, (k,) + v.shape).copy()
            for i in moved:
                key, new = chunk[i][name]
                if key is None:
                    arr[i] = new
                else:
                    arr[i][key] = new
            params[name] = arr.reshape((k * n,) + v.shape[1:])
        inp = _validate(net, params)
        with np.errstate(all="ignore"):
            if kinked:
                loc = _forward_locals(inp)
                out[s:s + k] = np.reshape(np.asarray(loc["loss"], dtype=np.float64), (k, n))
                sg = _kink_signs(net, loc, kinked).reshape((k, n, -1))
                crossed[s:s + k] = np.any((sg != ref_signs[None]) & (ref_signs[None] != 0), axis=-1)
                woken[s:s + k] = np.sum((sg != 0) & (ref_signs[None] == 0), axis=-1)
            else:
                out[s:s + k] = np.reshape(_loss_of(inp), (k, n))
        # Each loss value's rounding bound, from the forward error model at that very point.
        err[s:s + k] = np.reshape(_ErrorModel(inp, 2.0 ** -53, backward=False).e_loss, (k, n))
    return out, err, crossed, woken


# ---------------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------------


def _fd_compare(Cp, Cm, C0, step_p, step_m, target, ep, em, e0, tol_target):
    """One direction per sample.  Cp, Cm: (4, n) losses at p + Δ⁺(t), p − Δ⁻(t) for t = h, h/2,
    h/4, h/8; step_p, step_m: (4, n) the step lengths actually taken along the direction; target:
    the closed form's derivative along it; tol_target: its error bound (plus any
    displacement-rounding term); ep, em, e0: the losses' rounding bounds (at the points
    themselves: a loss that is 0 at p is not 0 at p ± h).  Returns (finite difference, tolerance,
    passes, settled)."""
    with np.errstate(all="ignore"):
        span = step_p + step_m
        F = (Cp - Cm) / span
        # Richardson on the three smallest steps: F(t) = C' + a t² + b t⁴ + … ⇒
        # R₁ = (4F(h/4) − F(h/2))/3, R₂ = (4F(h/8) − F(h/4))/3 are C' + O(h⁴), and |R₂ − R₁|
        # bounds R₂'s error (15× margin in the asymptotic regime).
        R1 = (4.0 * F[2] - F[1]) / 3.0
        R = (4.0 * F[3] - F[2]) / 3.0
        trunc = np.abs(R - R1)
        rnd = (ep + em) / span  # each central difference's rounding: its two losses' bounds
        rounding = (4.0 * rnd[3] + rnd[2]) / 3.0
        tol = trunc + rounding + tol_target
        # Settled: in the regime above, d_i = F(h_i) − F(h_i/2) keep their sign and
        # 4 ≤ d_i/d_{i+1} ≤ 16 (4 where a dominates, 16 where b does).  Both ratios of the ladder
        # must lie in [3, 17]: a ratio of 2 (an O(h) error, where φ'' jumps within h: ELU,
        # softsign at 0) or any other value (a curvature scale below h) means the truncation
        # estimate cannot be trusted at this h.  Differences within rounding are settled as is.
        d = F[:-1] - F[1:]
        noise = 4.0 * (rnd[:-1] + rnd[1:])
        quiet = np.all(np.abs(d) <= noise, axis=0)
        ratio_ok = np.ones_like(quiet)
        for i in range(2):
            ratio_ok &= (d[i] * d[i + 1] > 0) & (np.abs(d[i]) >= 3.0 * np.abs(d[i + 1])) & (np.abs(d[i]) <= 17.0 * np.abs(d[i + 1]))
        settled = quiet | ratio_ok
        err = np.abs(R - target)
        ok = err <= tol
        # A kink at p: one-sided differences at t = h/8, each with an error estimate (its change
        # from h/4, which is its O(t·C'') truncation, plus its rounding bound); where C' jumps by
        # more than a smooth function allows, any value between them passes.
        right = [(Cp[i] - C0) / step_p[i] for i in (2, 3)]
        left = [(C0 - Cm[i]) / step_m[i] for i in (2, 3)]
        tr, tl = np.abs(right[1] - right[0]), np.abs(left[1] - left[0])
        rr, rl = (ep[3] + e0) / step_p[3], (em[3] + e0) / step_m[3]
        er, el = tr + rr, tl + rl
        # Smooth: right − left = t·C'' + rounding, and t·C''/2 is what tr and tl each estimate,
        # so |right − left| ≤ tr + tl + rr + rl; a kink is taken where it exceeds 2(tr + tl) + rr + rl.
        kink = np.abs(right[1] - left[1]) > 2.0 * (tr + tl) + rr + rl
        lo = np.minimum(left[1] - el, right[1] - er) - tol_target
        hi = np.maximum(left[1] + el, right[1] + er) + tol_target
        between = kink & (target >= lo) & (target <= hi)
        ok = ok | between
        tol = np.where(between, np.maximum(tol, err), tol)
    return R, tol, ok, settled | between


_LEVELS = 8  # step ladders h·16^-k, k = 0..7 (down to eps·3.7e-9) while one is not asymptotic


def _fd_ladders(net, base, n, items, eps, make, target, tol_target, kinked=(), ref_signs=None):
    """Richardson ladders for ``items`` (one direction each, per sample): at h = eps, then, for
    the items whose ladder is not in its asymptotic regime, at eps/16, eps/256, … (``_LEVELS``).
    ``make(item, t) -> (moved up, moved down, step up (n,), step down (n,), displacement error (n,))``.
    ``target``, ``tol_target``: (n, m).  Returns fd, tol, ok as (n, m), the smallest h used, and
    the entries no ladder could settle (n, m)."""
    m = len(items)
    fd, tol, ok = np.zeros((n, m)), np.zeros((n, m)), np.zeros((n, m), dtype=bool)
    done, undecided = np.zeros((n, m), dtype=bool), np.zeros((n, m), dtype=bool)
    pending, h_min = list(range(m)), eps
    for level in range(_LEVELS):
        h = eps * 16.0 ** -level
        ts = (h, h / 2, h / 4, h / 8)
        perts, meta = [{}], []
        for j in pending:
            sp, sm, dev = np.empty((4, n)), np.empty((4, n)), np.zeros(n)
            for i, t in enumerate(ts):
                up, dn, sp[i], sm[i], dv = make(items[j], t)
                perts += [up, dn]
                dev = np.maximum(dev, dv)
            meta.append((j, sp, sm, dev))
        try:
            C, eC, crossed, woken = _losses(net, base, n, perts, kinked, ref_signs)
        except InvalidArgument as exc:
            # A step from the point left the loss's domain (cross-entropy's a_L in (0, 1)) or the
            # float range: the point sits within one step of an edge.  Say so, not which stacked
            # perturbation tripped (its "batch index" names no sample of the caller's).
            raise InvalidArgument(
                "check_gradients: a finite-difference step of up to %g·max(1, |p|) from the point leaves the loss's domain "
                "or the float range (%s); the point is within one step of that edge: pass a smaller eps= "
                "(the steps are eps, eps/2, eps/4 and eps/8, times max(1, |p|))"
                % (eps, str(exc).split(" (batch index")[0])) from None
        still = []
        for k, (j, sp, sm, dev) in enumerate(meta):
            c, e = C[1 + 8 * k: 9 + 8 * k], eC[1 + 8 * k: 9 + 8 * k]
            R, t_, ok_, settled = _fd_compare(c[0::2], c[1::2], C[0], sp, sm, target[:, j], e[0::2], e[1::2], eC[0],
                                              tol_target[:, j] + dev)
            # A ladder whose points put some z_l of a kinked layer on the other side of 0 (where
            # it was not 0 at p) straddles a kink that is not at p: C is not smooth there, and
            # neither the Richardson estimate nor the one-sided test applies.  Take a smaller h.
            straddles = np.any(crossed[1 + 8 * k: 9 + 8 * k], axis=0)
            settled = settled & ~straddles
            # Two or more units exactly at their kink at p, moved off it by this direction: the
            # one-sided derivatives along it mix branches that the convention φ'(0) = left
            # derivative does not (it takes every such unit as inactive), so neither "between
            # the one-sided differences" nor a smaller step can decide; the central test alone.
            multi = np.max(woken[1 + 8 * k: 9 + 8 * k], axis=0) >= 2
            take = ~done[:, j] & (settled | multi | (level == _LEVELS - 1))
            fd[take, j], tol[take, j], ok[take, j] = R[take], t_[take], ok_[take]
            # Never settled, down to h = eps·16^-7: kinks closer to p than any step can resolve
            # (a deep ReLU net with vanishing z), where finite differences cannot decide.
            undecided[:, j] |= take & (~settled | multi) & ~ok_
            done[:, j] |= take
            if not done[:, j].all():
                still.append(j)
        h_min = h
        pending = still
        if not pending:
            break
    return fd, tol, ok, h_min, undecided


def check_gradients(net, params, targets=None, *, wrt=None, grad_fn=None, eps=None, rtol=None, atol=None,
                    fd_entries=64, fast=False, directions=4, seed=0, raise_on_failure=True, loss=None,
                    _names=None) -> GradientCheckReport:
    """Compare the closed form, backprop and finite differences (and ``grad_fn``).

    * closed form: :func:`~symgrad.numeric.evaluate_gradient` of ``net.gradient(name)``;
    * backprop: :func:`~symgrad.numeric.backprop`, within twice the error bound of the module
      docstring;
    * finite differences, in float64: Richardson extrapolation of central differences at
      ``h, h/2, h/4`` with ``h = eps·max(1, |p|)``, within the estimated truncation error plus
      the rounding bound; at a kink, any value between the one-sided differences passes.  Every
      entry, or a fixed random subset of ``fd_entries`` per array parameter; or, with
      ``fast=True``, ``directions`` random directions (seeded by ``seed``) over all of them
      (directional derivatives: O(L) loss evaluations instead of O(L²));
    * ``grad_fn(params) -> {name: gradient}``: the user's gradients, within
      ``atol + rtol·|cf|`` plus the closed form's own bound.

    A PyTorch ``nn.Sequential`` as ``net``: ``check_gradients(module, inputs, targets,
    loss="quadratic")`` (inputs (batch, n_0), targets (batch, n_L)) reads it with
    :func:`~symgrad.from_torch` and compares the module's own autograd gradients, so its custom
    ``autograd.Function`` s, as ``grad_fn``: one backward pass per sample, in float64 on a copy
    (:func:`~symgrad.interop.pytorch.module_gradients`).  Parameters are named by ``state_dict``
    key (``2.weight``) in the report and messages, and ``wrt`` takes those keys; a bias the module
    does not have is not checked.  ``targets`` and ``loss`` are for modules only (an example:
    :mod:`symgrad.interop.pytorch`).

    ``eps``, ``rtol``, ``atol`` default to :data:`TOLERANCES` for the parameters' dtype.  float32
    parameters are checked with a :class:`PrecisionWarning`: the closed form and backprop run in
    float32 (their bounds use float32's u), the finite differences in float64 at the same point.

    On a mismatch raises :class:`GradientCheckError` with a census (how many entries fail of how
    many, the worst ones with closed form, backprop, finite difference and relative error, and the
    step), or returns the report with ``raise_on_failure=False``.

    >>> import symgrad
    >>> from symgrad.numeric import sample
    >>> net = symgrad.chain(3, "tanh")
    >>> check_gradients(net, sample(net, 8, seed=0)).ok
    True
    """
    if _interop.is_torch_module(net):
        return _check_module(net, params, targets, loss, wrt, grad_fn, dict(
            eps=eps, rtol=rtol, atol=atol, fd_entries=fd_entries, fast=fast, directions=directions, seed=seed,
            raise_on_failure=raise_on_failure))
    if targets is not None or loss is not None:
        raise InvalidArgument("check_gradients: targets= and loss= are for a PyTorch module; for a symgrad network the target "
                              "is params['y'] and the loss is the network's own")
    show = (lambda n: _names.get(n, n)) if _names else (lambda n: n)  # noqa: E731 - state_dict keys for a module
    eps = _real("eps", eps, positive=True, upper=0.5)
    rtol = _real("rtol", rtol)
    atol = _real("atol", atol)
    fd_entries = _positive_int("fd_entries", fd_entries)
    directions = _positive_int("directions", directions)
    for flag, val in (("fast", fast), ("raise_on_failure", raise_on_failure)):
        if not isinstance(val, (bool, np.bool_)):
            raise InvalidArgument("check_gradients: %s=%r must be True or False" % (flag, val))
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise InvalidArgument("check_gradients: seed=%r must be a non-negative int or None" % (seed,))
    if grad_fn is not None and not callable(grad_fn):
        raise InvalidArgument("check_gradients: grad_fn=%r must be callable as grad_fn(params) -> {name: gradient}" % (grad_fn,))
    inp = _validate(net, params)
    names = _names_to_check(net, wrt)
    tol0 = TOLERANCES[inp.dtype]
    if inp.dtype == np.float32:
        warnings.warn(
            "check_gradients: the parameters are float32; the closed form and backprop are checked to float32's "
            "rounding (u = 6e-8), the finite differences run in float64 at the same point. Use float64 for a tight check.",
            PrecisionWarning,
            stacklevel=2,
        )
    eps = tol0.eps if eps is None else eps
    rtol = tol0.rtol if rtol is None else rtol
    atol = tol0.atol if atol is None else atol
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
        for name in names:
            try:
                arr = np.asarray(user[name])
                ok = arr.dtype.kind in "biuf"
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise InvalidArgument("check_gradients: grad_fn's gradient for %r must be real numbers (float64 or float32), not %s"
                                      % (name, type(user[name]).__name__ if not hasattr(user[name], "dtype") else user[name].dtype))
    B = inp.batch
    n = 1 if B is None else B
    u = float(np.finfo(inp.dtype).eps) / 2
    model = _ErrorModel(inp, u)
    inp64 = inp if inp.dtype == np.float64 else _validate(net, {k: np.asarray(v, dtype=np.float64) for k, v in params.items()})
    kinds = ["backprop", "finite_difference"] + (["grad_fn"] if user is not None else [])
    failures, max_rel, max_ratio = [], dict.fromkeys(kinds, 0.0), dict.fromkeys(kinds, 0.0)
    census = {k: [0, 0] for k in kinds}
    worst, details, unsure_count = [], {}, {}
    scale = atol / rtol if rtol > 0 else np.finfo(np.float64).tiny

    def nb(a, name):  # (n,) + base shape, float64
        return np.broadcast_to(np.asarray(a, dtype=np.float64), (n,) + _base_shape(net, name))

    def record(kind, name, value, ref, tol, labels, extra, unsure=None):
        """value, ref, tol: (n, m) arrays over m entries with labels[j] = (index tuple); unsure:
        the entries the comparison could not decide (counted, not failed)."""
        with np.errstate(all="ignore"):
            err = np.abs(value - ref)
            bad = ~(err <= tol)
            if unsure is not None:
                bad &= ~unsure
                unsure_count[kind] = unsure_count.get(kind, 0) + int(unsure.sum())
            rel = err / (np.abs(ref) + scale)
            ratio = np.where(tol > 0, err / tol, np.where(err > 0, np.inf, 0.0))
        fin = rel[np.isfinite(rel)]
        if fin.size:
            max_rel[kind] = max(max_rel[kind], float(fin.max()))
        fr = ratio[np.isfinite(ratio)]
        if fr.size:
            max_ratio[kind] = max(max_ratio[kind], float(fr.max()))
        details[(kind, show(name))] = {"index": labels, "value": value, "closed_form": ref, "tolerance": tol, "failed": bad}
        census[kind][0] += int(bad.sum())
        census[kind][1] += int(bad.size)
        if not bad.any():
            return
        order = np.argsort(-np.where(bad, np.nan_to_num(ratio, posinf=1e308), -1.0), axis=None)[: min(_WORST, int(bad.sum()))]
        for flat in order:
            b, j = np.unravel_index(flat, bad.shape)
            entry = {"kind": kind, "param": show(name), "index": labels[j], "batch": None if B is None else int(b),
                     "value": float(value[b, j]), "closed_form": float(ref[b, j]), "rel_error": float(rel[b, j]),
                     "tolerance": float(tol[b, j]), "ratio": float(ratio[b, j])}
            entry.update({k: float(v[b, j]) for k, v in extra.items()})
            entry[kind] = entry["value"]
            entry.setdefault("backprop", float("nan"))
            entry.setdefault("finite_difference", float("nan"))
            worst.append(entry)
        b, j = (int(i) for i in np.argwhere(bad)[0])  # the first failing entry (batch order)
        idx = labels[j]
        label = show(name) + ("[%s]" % ",".join(map(str, idx)) if idx else "")
        vals = {"closed form": ref[b, j]}
        vals.update({k.replace("_", " "): v[b, j] for k, v in extra.items()})
        vals[kind.replace("_", " ")] = value[b, j]
        failures.append(
            "%s: ∂C/∂%s%s: %s; relative error %.3e, |difference| %.3e > tolerance %.3e (%d of %d entries fail)"
            % (kind, label, "" if B is None else " at batch index %d" % b,
               ", ".join("%s = %.17g" % kv for kv in vals.items()), rel[b, j], err[b, j], tol[b, j], int(bad.sum()), bad.size)
        )

    cfs, bps, Es, Ess = {}, {}, {}, {}
    # Every closed form at once: a chain's share one factor sequence (O(L), not O(L²)).
    closed = dict(zip(names, evaluate_gradients([net.gradient(name) for name in names], inp, _locals=loc)))
    for name in names:
        cf = nb(closed[name], name)
        g = nb(bp.grads[name], name)
        E = nb(model.bound(name), name)
        cfs[name], bps[name], Es[name], Ess[name] = cf, g, E, nb(model.bound(name, smooth=True), name)
        m = cf[0].size
        labels = list(np.ndindex(*cf.shape[1:])) if cf.ndim > 1 else [()]
        fl = lambda a: a.reshape(n, m)  # noqa: E731
        record("backprop", name, fl(g), fl(cf), 2.0 * fl(E), labels, {})
        if user is not None:
            got = np.asarray(user[name], dtype=np.float64)
            try:
                got = nb(got, name)
            except ValueError:
                raise InvalidArgument("check_gradients: grad_fn's gradient for %r has shape %s; expected %s" % (name, np.shape(user[name]), cf.shape if B is not None else cf.shape[1:])) from None
            record("grad_fn", name, fl(got), fl(cf), atol + rtol * np.abs(fl(cf)) + fl(E), labels, {"backprop": fl(g)})
    kinked = [l for l, act in enumerate(net.activations) if _has_kink(act)]
    ref_signs = _kink_signs(net, _forward_locals(inp64), kinked).reshape((n, -1)) if kinked else None
    base = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), (n,) + np.shape(inp64.values[k])[1 if inp64.batched[k] else 0:])
            for k, v in inp64.values.items()}
    base.update({k: np.float64(v) for k, v in (inp64.alpha_values or {}).items()})  # symbolic α: 0-d, not perturbed
    if not fast:
        plan, items = [], []
        for name in names:
            entries = _entries_for(_base_shape(net, name), fd_entries, name)
            plan.append((name, entries, len(items)))
            items += [(name, e) for e in entries]

        def make(item, t):
            name, e = item
            key = (slice(None),) + e
            pe = base[name][key]
            hh = t * np.maximum(1.0, np.abs(pe))
            up, dn = pe + hh, pe - hh
            return {name: (key, up)}, {name: (key, dn)}, up - pe, pe - dn, 0.0  # the steps taken (exact)

        at = lambda d: np.stack([d[name][(slice(None),) + e] for name, e in items], axis=-1)  # noqa: E731
        cf_all, bp_all = at(cfs), at(bps)
        fd, tol, _, smallest, undecided = _fd_ladders(net, base, n, items, eps, make, cf_all, at(Ess), kinked, ref_signs)
        for name, entries, first in plan:
            sl = slice(first, first + len(entries))
            record("finite_difference", name, fd[:, sl], cf_all[:, sl], tol[:, sl], entries, {"backprop": bp_all[:, sl]},
                   undecided[:, sl])
        step_text = ("finite differences: steps h, h/2, h/4, h/8 with h = %g·max(1, |p|) (down to %g·max(1, |p|) where not "
                     "asymptotic), Richardson extrapolation, float64" % (eps, smallest))
    else:
        # All checked entries side by side: (n, P).
        sizes = [base[k][0].size for k in names]
        cuts = np.cumsum([0] + sizes)
        flat = lambda d: np.concatenate([np.reshape(d[k], (n, -1)) for k in names], axis=1)  # noqa: E731
        p_f, cf_f, E_f, bp_f = flat(base), flat(cfs), flat(Ess), flat(bps)
        s_f = np.maximum(1.0, np.abs(p_f))
        rng = np.random.default_rng(seed)
        vs = []
        for _ in range(directions):
            xi = rng.standard_normal(p_f.shape)
            xi /= np.linalg.norm(xi, axis=1, keepdims=True)  # unit norm in the scaled coordinates
            vs.append(xi * s_f)
        shapes = {k: base[k].shape for k in names}

        def make(v, t):
            out, moved_by = [], np.zeros(n)
            for sgn in (1.0, -1.0):
                moved = p_f + sgn * t * v
                out.append({k: (None, moved[:, cuts[i]:cuts[i + 1]].reshape(shapes[k])) for i, k in enumerate(names)})
                # p + t·v is rounded: the displacement is off by |(moved − p) − t·v| per entry,
                # which moves C by at most that times the gradient's magnitude bound (|cf| + E).
                moved_by += np.sum(np.abs((moved - p_f) - sgn * t * v) * (np.abs(cf_f) + E_f), axis=1)
            # The central difference divides the two sides' sum by 2t; Richardson's weights
            # (4·x + x)/3 make it at most 5/3 of that: 2× is taken.
            tt = np.full(n, t)
            return out[0], out[1], tt, tt, 2.0 * moved_by / (2 * t)

        P = p_f.shape[1]
        target = np.stack([np.sum(cf_f * v, axis=1) for v in vs], axis=-1)
        # ⟨cf, v⟩ is off by ⟨E, |v|⟩ (the entries' bounds) plus the dot product's rounding γ_P.
        tol_t = np.stack([np.sum(E_f * np.abs(v), axis=1) + P * 2.0 ** -53 * np.sum(np.abs(cf_f * v), axis=1) for v in vs], axis=-1)
        fd, tol, _, h_min, undecided = _fd_ladders(net, base, n, vs, eps, make, target, tol_t, kinked, ref_signs)
        bp_v = np.stack([np.sum(bp_f * v, axis=1) for v in vs], axis=-1)
        record("finite_difference", "<v, grad>", fd, target, tol, [("v%d" % i,) for i in range(directions)], {"backprop": bp_v},
               undecided)
        step_text = ("%d random directions v (seed %s); steps t, t/2, t/4, t/8 along v with t = %g (down to %g where not "
                     "asymptotic), v scaled by max(1, |p|) per entry, Richardson extrapolation, float64" % (directions, seed, eps, h_min))
    census_t = {k: tuple(v) for k, v in census.items()}
    worst.sort(key=lambda w: -w["ratio"])
    report = GradientCheckReport(not failures, [show(n) for n in names], failures, max_rel, max_ratio, census_t, worst[:_WORST], step_text,
                                 "fast" if fast else "entries", details, unsure_count)
    if failures and raise_on_failure:
        shown = failures[:10] + (["… and %d more" % (len(failures) - 10)] if len(failures) > 10 else [])
        worst_lines = ["worst: %s ∂C/∂%s%s%s: closed form %.6g, %s %.6g, relative error %.2e, %.1f× the tolerance"
                       % (w["kind"], w["param"], "[%s]" % ",".join(map(str, w["index"])) if w["index"] else "",
                          "" if w["batch"] is None else " (batch %d)" % w["batch"], w["closed_form"], w["kind"].replace("_", " "),
                          w["value"], w["rel_error"], w["ratio"]) for w in report.worst]
        raise GradientCheckError("gradient check failed for %d comparison(s) (%s):\n  %s"
                                 % (len(failures), report.summary(), "\n  ".join(shown + worst_lines)))
    return report


def _check_module(module, inputs, targets, loss, wrt, grad_fn, options):
    """check_gradients on a PyTorch module: its autograd as grad_fn, named by state_dict key."""
    if grad_fn is not None:
        raise InvalidArgument("check_gradients: grad_fn= with a PyTorch module: the module's own autograd is the gradient checked")
    if targets is None:
        raise InvalidArgument("check_gradients(module, inputs, targets): the targets are missing; pass an array of shape "
                              "(batch, n_L) beside the inputs (batch, n_0)")
    net, params, fn, names = _interop.module_gradients(module, inputs, targets, loss="quadratic" if loss is None else loss)
    by_key = {v: k for k, v in names.items() if v is not None}
    if wrt is None:
        chosen = [k for k in net.parameters if names[k] is not None]
    else:
        asked = [wrt] if isinstance(wrt, str) else list(wrt) if isinstance(wrt, (list, tuple)) else None
        if not asked or not all(isinstance(k, str) and (k in by_key or names.get(k)) for k in asked):
            raise InvalidArgument("check_gradients: wrt=%r must name the module's parameters by state_dict key; known: %s"
                                  % (wrt, ", ".join(by_key)))
        chosen = [by_key.get(k, k) for k in asked]
    return check_gradients(net, params, wrt=chosen, grad_fn=fn, _names={k: v for k, v in names.items() if v is not None},
                           **options)


def _entries_for(shape, limit, seed_name):
    """Indices of a parameter checked by finite differences: all, or a fixed random subset."""
    total = int(np.prod(shape)) if shape else 1
    idx = list(np.ndindex(*shape)) if shape else [()]
    if total <= limit:
        return idx
    rng = np.random.default_rng(zlib.crc32(seed_name.encode()))  # the same subset in every run
    pick = rng.choice(total, size=limit, replace=False)
    return [idx[i] for i in sorted(pick)]
