"""The output layer's error δ^L = ∂C/∂z_L and the cost, in one place for every path (NumPy and compiled
kernels, rescaled, log space, dense, closed form): a_L − y from the logit where the output φ' cancels.

Every numeric path forms a_L − y, ∂C/∂a_L and the cross-entropy cost through the functions here, in
the representation it carries: linear (:func:`_minus_y`), m·2^k (:func:`_split_minus_y`,
:func:`_split_dcost`, :func:`_split_output`) or log|·| and sign (:func:`_log_minus_y`,
:func:`_log_output`).  Sources: ∂C/∂a = a − y for the quadratic cost and
∂C/∂a = (a − y)/(a(1 − a)) for binary cross-entropy; with a sigmoid output and cross-entropy σ'
cancels and δ^L = a^L − y (Nielsen, *Neural Networks and Deep Learning*, ch. 3, eq. 66); with a
softmax output and the log-likelihood C = −Σ y_i ln a_i the Jacobian cancels and δ^L = a^L − y
for Σ y = 1 (ch. 3 eqs. 78–81), a^L − y and C formed from the logits (log-sum-exp)."""

from __future__ import annotations

import math

import numpy as np

from symgrad.numeric import logspace as _nl
from symgrad.numeric.logspace import log_abs, log_abs_value, sign_value
from symgrad.errors import InvalidArgument
from symgrad.numeric.inputs import _all_finite


def _cost_from_logit(zL, y):
    """Binary cross-entropy of a sigmoid output from its logit, per unit:
    C = −[y ln σ(z) + (1 − y) ln(1 − σ(z))] = softplus(z) − y·z (Nielsen ch. 3 eq. 57 with
    ln σ(z) = −softplus(−z), ln(1 − σ(z)) = −softplus(z)), written max(z, 0) − y·z + log1p(e^−|z|):
    finite for every finite z, and where y = 1, z ≫ 0 the cost e^−z is kept (z + log1p(e^−z) − z
    would round it to 0).  The compiled kernel forms the same expression."""
    return np.maximum(zL, 0.0) - y * zL + np.log1p(np.exp(-np.abs(zL)))


def _vector_output(act) -> bool:
    """An output-only (vector) activation, softmax: a^L − y and the cost come from the logits
    through the activation's own kernels (:attr:`Activation.minus_target`, ``log_abs_value``)."""
    return bool(act.output_only)


def _simplex_minus_y(act, zL, y):
    """softmax(z^L) − y from the logits as (value, log|·|, sign) (:attr:`Activation.minus_target`):
    (1 − y) − Σ_{j≠top} a_j at the top unit where y ≥ ½, so a one-hot target keeps a_y − 1 where
    a_y rounds to 1; log|·| finite where a underflowed (y = 0)."""
    zL = np.asarray(zL, dtype=np.float64)
    return act.minus_target(zL, np.broadcast_to(np.asarray(y, dtype=np.float64), zL.shape))


def _simplex_cost(act, zL, y):
    """C = −Σ_i y_i ln a_i per unit, from log softmax (the activation's ``log_abs_value``: the
    log-sum-exp form (z_i − max z) − log1p(Σ_{j≠top} e^{z_j − max z})), 0 where y_i = 0: finite
    for every finite z (a gap past the float range gives +inf, no nan, no warning).
    Nielsen ch. 3 eq. 80: C = −ln a^L_y for a one-hot y."""
    la = act.log_abs_value(zL)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(y == 0, 0.0, -y * np.where(y == 0, 0.0, la))


def _check_probability_target(net, y):
    """The log-likelihood's target is a probability vector: y ≥ 0 and Σ_i y_i = 1 within the
    rounding of the sum (n·u·Σ|y_i|, u the unit roundoff of y's dtype); the closed form
    δ^L = a^L − y assumes it (Gradient.assumptions).  Else InvalidArgument naming the value."""
    y = np.asarray(y)
    if np.any(y < 0):
        idx = tuple(int(i) for i in np.argwhere(y < 0)[0])
        raise InvalidArgument(
            "parameter 'y' has %r at index %s: a log_likelihood target must be a probability vector (y_i >= 0, Σ_i y_i = 1), "
            "e.g. one-hot [0, 1, 0]" % (float(y[idx]), idx))
    n = y.shape[-1]
    tot = np.sum(y, axis=-1, dtype=np.float64)
    u = float(np.finfo(np.result_type(y, np.float32)).eps) / 2
    bad = np.abs(tot - 1.0) > (n + 2) * u * np.maximum(1.0, tot)
    if np.any(bad):
        i = int(np.argmax(np.reshape(bad, -1)))
        where = "" if np.ndim(tot) == 0 else " (batch index %d)" % i
        raise InvalidArgument(
            "parameter 'y' sums to %r%s, not 1: a log_likelihood target must be a probability vector (one-hot, or y_i >= 0 "
            "with Σ_i y_i = 1 within rounding); normalise it, e.g. y / y.sum(-1, keepdims=True)" % (float(np.reshape(tot, -1)[i]), where))


def _minus_y(act, aL, zL, y):
    """a_L − y in linear space (Nielsen ch. 3 eq. 66: δ^L = a^L − y for σ + cross-entropy; ∂C/∂a_L
    for the quadratic cost): for a sigmoid output σ(z_L) − y from the logit, as float64 (a_L − y
    cancels where σ saturates: σ(40) − 1 is −4.2e-18, not 0); for a softmax output from the logits
    (:func:`_simplex_minus_y`); otherwise a_L − y."""
    if _is_sigmoid(act):
        return _nl.sigmoid_minus_y(zL, y)[0]
    if _vector_output(act):
        return _simplex_minus_y(act, zL, y)[0]
    return aL - y


def _split_minus_y(act, aL, zL, y):
    """a_L − y as m·2^k: for a sigmoid output σ(z_L) − y from the logit (a_L − y cancels where σ
    saturates: σ(40) − 1 is −4.2e-18, not 0); otherwise a_L − y, with a_L taken from its log where
    it underflowed and y = 0."""
    if _is_sigmoid(act):
        return _nl.split(*_nl.sigmoid_minus_y(zL, y))
    if _vector_output(act):
        return _nl.split(*_simplex_minus_y(act, zL, y))
    return _nl.split_diff(aL, y, lambda m: np.where(y[m] == 0, log_abs_value(act, zL[m]), -np.inf),
                          lambda m: sign_value(act, zL[m]))


def _log_minus_y(act, aL, zL, y):
    """a_L − y as (log|a_L − y|, sign): for a sigmoid output from the logit (σ(z_L) − y); otherwise
    a_L − y, halved (exactly) where the difference overflows (a_L = 1e300, y = −1.8e308), and
    a_L itself (its log from z_L) where a_L underflowed to 0 and y = 0.  Below −1.8e308 the
    correctly rounded log is −inf."""
    if _is_sigmoid(act):
        _, lg, sg = _nl.sigmoid_minus_y(zL, y)
        return lg, sg
    if _vector_output(act):
        _, lg, sg = _simplex_minus_y(act, zL, y)
        return lg, sg
    with np.errstate(over="ignore", invalid="ignore"):
        d = aL - y
        ld = np.where(np.isfinite(d), log_abs(np.where(np.isfinite(d), d, 1.0)), log_abs(0.5 * aL - 0.5 * y) + math.log(2.0))
        ld = np.where((np.abs(d) < _nl.TINY) & (y == 0), log_abs_value(act, zL), ld)
    return ld, np.where(d == 0, sign_value(act, zL) * (y == 0), np.sign(d))


def _split_dcost(cost, act, aL, zL, y):
    """∂C/∂a_L as m·2^k, without φ'(z_L): a_L − y (:func:`_split_minus_y`) for the quadratic cost
    (:attr:`Loss.dcost_is_residual`), times 1/(a_L(1 − a_L)) for cross-entropy
    (:attr:`Loss.domain_open_unit`: ∂C/∂a = (a − y)/(a(1 − a))); any other loss's ``dvalue``."""
    if cost.dcost_is_residual:
        return _split_minus_y(act, aL, zL, y)
    if cost.domain_open_unit:
        return _nl.smul(_split_minus_y(act, aL, zL, y), _split_inv_a_one_minus_a(aL))
    return _nl.split(np.asarray(cost.dvalue(aL, y), dtype=np.float64))


def _split_output(net, aL, zL, y, grad=None):
    """∂C/∂z_L as m·2^k: σ(z_L) − y from the logit when the loss cancels σ' (Nielsen ch. 3 eq. 66);
    else φ'(z_L)·∂C/∂a_L (:func:`_split_dcost`).  ``grad``: φ'(z_L) as m·2^k where the caller has
    it already (default: formed here from z_L)."""
    act, cost = net.activations[-1], net.loss
    if cost.cancels_with(act):
        return _split_minus_y(act, aL, zL, y)
    dd = _split_dcost(cost, act, aL, zL, y)
    return _nl.smul(_nl.split_grad(act, zL) if grad is None else grad, dd)


def _log_output(net, aL, zL, y, lg, sg):
    """∂C/∂z_L as (log|·|, sign), given log|φ'(z_L)| and its sign (``lg``, ``sg``): σ(z_L) − y from
    the logit when the loss cancels σ' (Nielsen ch. 3 eq. 66); else log|φ'| + log|a_L − y|
    (:func:`_log_minus_y`), less log(a_L(1 − a_L)) for cross-entropy, summed in that order."""
    act, cost = net.activations[-1], net.loss
    if cost.cancels_with(act):
        return _log_minus_y(act, aL, zL, y)
    ld, sd = _log_minus_y(act, aL, zL, y)
    with np.errstate(over="ignore", invalid="ignore"):
        lg = lg + ld
    if cost.domain_open_unit:
        lg = lg - (np.log(aL) + np.log1p(-aL))
    return lg, sg * sd


def _split_inv_a_one_minus_a(aL):
    """1/(a_L(1 − a_L)) as m·2^k: formed from a_L's mantissa and exponent, so a subnormal a_L
    (1e-310) gives 1e310 as a scaled number, not inf."""
    m, e = _nl.split(aL)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = _nl.split(1.0 / (m * (1.0 - np.asarray(aL, dtype=np.float64))))
    return inv[0], inv[1] - e


def _is_sigmoid(act) -> bool:
    """φ = σ exactly (Activation.logistic), so σ(z_L) − y can be formed from the logit."""
    return act.logistic


def _residual_output(net) -> bool:
    """The output layer is residual: a_L = a_{L−1} + α_L φ(z_L) is not φ(z_L), so ∂C/∂a_L comes
    from a_L itself (never from the logit) and no φ' cancels (the symbolic side allows only the
    quadratic cost there)."""
    res = getattr(net, "residual", ())
    return bool(res) and res[-1] is not None


def _output_delta(net, aL, zL, y):
    """∂C/∂a_L factor (or δ_L itself when the loss cancels φ'), and the per-sample loss.

    For a residual output layer (:func:`_residual_output`) the factor is ∂C/∂a_L = a_L − y of
    the quadratic cost, formed from a_L."""
    act, cost = net.activations[-1], net.loss
    if _residual_output(net):
        with np.errstate(over="ignore", under="ignore"):
            d = aL - y
            return d, 0.5 * np.square(d), False
    if cost.on_simplex:
        # softmax + log-likelihood: δ^L = a^L − y given Σ y = 1 (checked), from the logits, and
        # C = −Σ y_i log softmax_i(z) in the log-sum-exp form (Nielsen ch. 3 eqs. 80–81).
        _check_probability_target(net, y)
        loss = _simplex_cost(act, zL, y)
        d = _simplex_minus_y(act, zL, y)[0].astype(np.result_type(zL, y), copy=False)
        return d, loss.astype(np.result_type(zL, y), copy=False), True
    if cost.cancels_with(act):
        # ∂C/∂z_L = σ(z_L) − y from the logit: a_L − y cancels (σ(40) − 1 is −4.2e-18, not 0).
        loss = _cost_from_logit(zL, y)
        with np.errstate(over="ignore", under="ignore"):
            d = _nl.sigmoid_minus_y(zL, y)[0].astype(np.result_type(zL, y), copy=False)
        return d, loss, True
    if cost.domain_open_unit:
        if not (np.all(aL > 0) and np.all(aL < 1)):
            i = int(np.argmax(~((aL > 0) & (aL < 1)))) if np.ndim(aL) else 0
            raise InvalidArgument(
                "%s needs the output a_L in (0, 1), but the %s output gives a_L = %r (batch index %d); "
                "use a sigmoid output layer" % (cost.name, act.name, float(np.reshape(aL, -1)[i]), i)
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
                "%s with a %s output at a_L = %r (batch index %d): 1 − a_L keeps fewer than half its digits, "
                "so ∂C/∂a_L would be mostly rounding; use a sigmoid output layer (its σ(z_L) − y is computed from the logit)"
                % (cost.name, act.name, float(np.reshape(aL, -1)[i]), i))
        loss = cost.value(aL, y)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            d = _minus_y(act, aL, zL, y) / (aL * (1.0 - aL))
        if not _all_finite(d):
            i = int(np.argmax(~np.isfinite(np.asarray(d)))) if np.ndim(d) else 0
            raise InvalidArgument(
                "%s with a %s output at a_L = %r (batch index %d): ∂C/∂a_L = (a_L − y)/(a_L(1 − a_L)) overflows; "
                "use a sigmoid output layer (its ∂C/∂z_L = σ(z_L) − y is computed from the logit)"
                % (cost.name, act.name, float(np.reshape(aL, -1)[i]), i))
        return d, loss, False
    with np.errstate(over="ignore", under="ignore"):
        d = _minus_y(act, aL, zL, y)
        if _is_sigmoid(act):  # the logit form is float64: back to the inputs' precision
            d = d.astype(np.result_type(aL, y), copy=False)
        return d, 0.5 * np.square(d), False


#: |z| above which σ(z) (z < 0) or σ'(z) is below the smallest normal float64 (e^−708.4).
_SIGMOID_SAFE_Z = 708.0
