"""Private helpers for the numeric evaluator: log-magnitudes and signs of activation values,
of φ' and of the loss gradient, computed from the pre-activation ``z`` so that they stay finite
where the linear value underflows (σ(−800) is 0 in float64, but log σ(−800) = −800).

Every function here is warning-free for finite float64 input and returns −inf exactly where the
value is exactly zero (a dead ReLU, z = 0 for a function through the origin), never nan.
"""

from __future__ import annotations

import math

import numpy as np

from .activations import _log_abs_where

__all__ = ["log_abs", "log_abs_value", "sign_value", "grad_sign", "log_sigmoid", "stable_sigmoid_minus_y"]


def log_abs(t):
    """log|t|, −inf (without a warning) where t == 0."""
    return _log_abs_where(t)


def log_sigmoid(x):
    """log σ(x) = −softplus(−x), finite for every finite x."""
    return -(np.maximum(-x, 0.0) + np.log1p(np.exp(-np.abs(x))))


def _log_softplus(x):
    # softplus(x) = log1p(e^x) underflows below x ≈ −745; there log softplus(x) = x + log(1 − e^x/2 + …).
    sp = np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))
    tiny = x < -30.0
    return np.where(tiny, x - 0.5 * np.exp(np.minimum(x, 0.0)), np.log(np.where(tiny, 1.0, sp)))


def _alpha(act) -> float:
    return float(dict(act.params).get("alpha", 1.0))


def log_abs_value(act, z):
    """log|φ(z)| for a built-in activation, from z (finite where φ(z) ≠ 0 exactly)."""
    name = act.name if act.builtin else None
    if name == "sigmoid":
        return log_sigmoid(z)
    if name == "softplus":
        return _log_softplus(z)
    if name == "silu":
        return log_abs(z) + log_sigmoid(z)
    if name == "gelu":
        from scipy.special import log_ndtr

        return log_abs(z) + log_ndtr(z)
    if name == "leaky_relu":
        a = _alpha(act)
        la = math.log(abs(a)) if a != 0 else -math.inf
        return np.where(z > 0, 0.0, la) + log_abs(z)
    if name == "elu":
        return np.where(z > 0, log_abs(z), math.log(_alpha(act)) + log_abs(np.expm1(np.minimum(z, 0.0))))
    if name == "identity":
        return log_abs(z)
    if name == "relu":
        return np.where(z > 0, log_abs(z), -np.inf)
    if name == "softsign":
        return log_abs(z) - np.log1p(np.abs(z))
    # tanh (tanh of a subnormal is that subnormal, never 0) and custom activations
    return log_abs(act.value(z))


def sign_value(act, z):
    """sign(φ(z)), exact even where φ(z) underflows."""
    name = act.name if act.builtin else None
    if name in ("sigmoid", "softplus"):
        return np.ones_like(z)
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, np.sign(_alpha(act)) * np.sign(z)).astype(z.dtype)
    if name in ("tanh", "silu", "gelu", "elu", "identity", "softsign"):
        return np.sign(z)
    return np.sign(act.value(z))


def grad_sign(act, z, g=None):
    """sign(φ'(z)), exact even where φ'(z) underflows (then only silu and GELU are negative:
    their φ' underflows only far into the left tail, where it is negative)."""
    g = act.grad(z) if g is None else g
    s = np.sign(g)
    if act.builtin:
        fill = -1.0 if act.name in ("silu", "gelu") else 1.0
        s = np.where(s == 0, fill, s)
        if act.name == "relu":
            s = np.where(z > 0, 1.0, 0.0)
    return s.astype(np.result_type(z, np.float32))


def stable_sigmoid_minus_y(z, y):
    """σ(z) − y without cancelling σ(z) ≈ 1 against y = 1: for z ≥ 0 it is (1 − y) − σ(−z)."""
    e = np.exp(-np.abs(z))
    r = 1.0 / (1.0 + e)
    return np.where(z >= 0, (1.0 - y) - e * r, e * r - y)
