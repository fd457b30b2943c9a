"""The output layer's formulas (symgrad/numeric/output.py) against mpmath, and the facts on Loss
that the numeric paths ask instead of a loss's name."""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest

import symgrad
from symgrad.numeric import logspace as _nl
from symgrad.numeric.output import (
    _cost_from_logit,
    _log_minus_y,
    _log_output,
    _minus_y,
    _split_dcost,
    _split_minus_y,
    _split_output,
)
from symgrad.spec.activations import activation
from symgrad.spec.losses import loss

U = 2.0 ** -53

# Logits and targets where the naive forms fail: σ saturated (a_L − y cancels), y = 1 with z ≫ 0
# (cost e^−z), z beyond σ's normal range.
ZS = np.array([40.0, -40.0, 3.0, -3.0, 0.0, 700.0, -700.0, 745.5, -800.0, 1e-3, 36.0])
YS = np.array([1.0, 0.0, 0.3, 0.7, 1.0, 1.0, 0.0, 1.0, 0.0, 0.5, 0.0])


@pytest.fixture(autouse=True)
def _digits():
    with mp.workdps(60):
        yield


def _mp_sigmoid(z):
    return 1 / (1 + mp.exp(-mp.mpf(z)))


def test_loss_facts():
    q, ce = loss("quadratic"), loss("cross_entropy")
    assert q.dcost_is_residual and not q.domain_open_unit
    assert ce.domain_open_unit and not ce.dcost_is_residual
    assert loss("bce") is ce and loss("mse") is q
    sig, tanh = activation("sigmoid"), activation("tanh")
    assert ce.cancels_with(sig) and not ce.cancels_with(tanh) and not q.cancels_with(sig)


def test_cost_from_logit_against_mpmath():
    got = _cost_from_logit(ZS, YS)
    for z, y, g in zip(ZS, YS, got):
        exact = mp.log1p(mp.exp(mp.mpf(z))) - mp.mpf(y) * mp.mpf(z)
        # max(z, 0) − y·z: one product and one difference, each rounded relative to its operands
        # (exact where y ∈ {0, 1}); log1p(e^−|z|) ≤ log 2 and the final sum a few roundings more.
        bound = 4 * U * (max(z, 0.0) + abs(y * z) + math.log(2.0))
        assert abs(g - exact) <= bound, (z, y, g, exact)
    # Where max(z, 0) − y·z is exactly 0 the cost is log1p(e^−|z|) alone, to a few ulps of itself.
    for z in (40.0, 700.0, -40.0):
        y = 1.0 if z > 0 else 0.0
        exact = mp.log1p(mp.exp(-abs(mp.mpf(z))))
        assert abs(_cost_from_logit(np.array(z), np.array(y)) - exact) <= 4 * U * exact
    # (y = 1, z = 40: 4.2e-18; z + log1p(e^−z) − z would round it to 0.)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "softplus"])
def test_minus_y_forms_agree_with_mpmath(name):
    """Linear, m·2^k and log forms of a_L − y: each within a few ulps of the exact value where it
    is representable; the sigmoid forms come from the logit."""
    act = activation(name)
    z = np.array([-3.0, -0.5, 0.25, 2.0, 18.0])
    y = np.array([0.0, 1.0, 0.3, 0.0, 1.0])
    a = act.value(z)
    lin = _minus_y(act, a, z, y)
    spl = _nl.value(_split_minus_y(act, a, z, y))
    la, sg = _log_minus_y(act, a, z, y)
    for i in range(len(z)):
        if name == "sigmoid":
            exact = _mp_sigmoid(z[i]) - mp.mpf(y[i])
            tol = 8 * U * abs(exact)
        else:
            exact = mp.mpf(float(a[i])) - mp.mpf(y[i])  # a_L as computed: the difference alone
            tol = U * abs(exact)
        assert abs(lin[i] - exact) <= tol and abs(spl[i] - exact) <= tol, (name, i, lin[i], spl[i], exact)
        assert sg[i] == mp.sign(exact)
        assert abs(la[i] - float(mp.log(abs(exact)))) <= 8 * U * max(1.0, abs(la[i])) + tol / abs(exact)
    # σ(40) − 1 = −σ(−40) = −4.2e-18 from the logit (a_L − y would give 0)
    if name == "sigmoid":
        assert _minus_y(act, act.value(np.array([40.0])), np.array([40.0]), np.array([1.0]))[0] < 0


def test_split_dcost_cross_entropy_and_output():
    """∂C/∂a_L = (a − y)/(a(1 − a)) for a tanh output, and φ'·∂C/∂a_L in split, log and the
    cancelled sigmoid form, all within a few ulps of mpmath."""
    tanh = activation("tanh")
    z = np.array([0.1, 0.5, 1.2])
    y = np.array([0.0, 1.0, 0.4])
    a = tanh.value(z)
    net = symgrad.chain(1, "tanh", "cross_entropy")
    dd = _nl.value(_split_dcost(net.loss, tanh, a, z, y))
    out = _nl.value(_split_output(net, a, z, y))
    lg, sg = _log_output(net, a, z, y, tanh.log_abs_grad(z), np.ones_like(z))
    for i in range(len(z)):
        ai, yi = mp.mpf(float(a[i])), mp.mpf(y[i])
        exact_dd = (ai - yi) / (ai * (1 - ai))
        exact = (1 - mp.tanh(mp.mpf(z[i])) ** 2) * exact_dd
        assert abs(dd[i] - exact_dd) <= 8 * U * abs(exact_dd)
        assert abs(out[i] - exact) <= 16 * U * abs(exact)
        assert sg[i] * math.exp(lg[i]) == pytest.approx(float(exact), rel=32 * U)
    sig_net = symgrad.chain(1, "sigmoid", "cross_entropy")
    sig = activation("sigmoid")
    zz = np.array([40.0, -40.0, 2.0])
    yy = np.array([1.0, 0.0, 0.3])
    got = _nl.value(_split_output(sig_net, sig.value(zz), zz, yy))
    lg, sg = _log_output(sig_net, sig.value(zz), zz, yy, np.zeros(3), np.ones(3))
    for i in range(3):
        exact = _mp_sigmoid(zz[i]) - mp.mpf(yy[i])
        assert abs(got[i] - exact) <= 8 * U * abs(exact)
        assert sg[i] * math.exp(lg[i]) == pytest.approx(float(exact), rel=32 * U)
