"""The output layer's error δ^L = ∂C/∂z_L and the cost, in one place for every path (NumPy and compiled
kernels, rescaled, log space, dense, closed form): a_L − y from the logit where the output φ' cancels."""

from __future__ import annotations

import math

import numpy as np

from symgrad.numeric import logspace as _nl
from symgrad.numeric.logspace import log_abs_value, sign_value
from symgrad.errors import InvalidArgument
from symgrad.numeric.inputs import _all_finite


def _split_output_quadratic(out, al, zl, y):
    return _split_minus_y(out, al, zl, y)


def _split_output(net, aL, zL, y):
    """∂C/∂z_L as m·2^k: σ(z_L) − y from the logit when the loss cancels σ'; else
    φ'(z_L)·∂C/∂a_L, with a_L − y = a_L taken from its log where a_L underflowed and y = 0."""
    act, cost = net.activations[-1], net.loss
    if cost.cancels_with(act):
        return _nl.split(*_nl.sigmoid_minus_y(zL, y))
    dd = _split_minus_y(act, aL, zL, y)
    if cost.name == "cross_entropy":
        dd = _nl.smul(dd, _split_inv_a_one_minus_a(aL))
    return _nl.smul(_nl.split_grad(act, zL), dd)


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


def _is_sigmoid(act) -> bool:
    """φ = σ exactly (Activation.logistic), so σ(z_L) − y can be formed from the logit."""
    return act.logistic


def _output_delta(net, aL, zL, y):
    """∂C/∂a_L factor (or δ_L itself when the loss cancels φ'), and the per-sample loss."""
    act, cost = net.activations[-1], net.loss
    if cost.cancels_with(act):
        # Binary cross-entropy from the logit: softplus(z) − y z, finite for every finite z.
        # ∂C/∂z_L = σ(z_L) − y from the logit: a_L − y cancels (σ(40) − 1 is −4.2e-18, not 0).
        loss = np.logaddexp(0.0, zL) - y * zL
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


#: |z| above which σ(z) (z < 0) or σ'(z) is below the smallest normal float64 (e^−708.4).
_SIGMOID_SAFE_Z = 708.0


