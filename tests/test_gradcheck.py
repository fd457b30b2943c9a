"""Gradient checks: closed form vs backprop vs finite differences (vs a user's gradients)."""

from __future__ import annotations

import numpy as np
import pytest

import symgrad
from symgrad import GradientCheckError
from symgrad.testing.gradcheck import PrecisionWarning, TOLERANCES, check_gradients
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
    # Only the user's gradients fail: the census says so, and each failing line compares them
    # with the closed form (and shows backprop beside it), never with finite differences.
    assert "backprop 0 of" in msg and "finite_difference 0 of" in msg and "grad_fn 12 of 48" in msg
    lines = [ln for ln in msg.splitlines() if ln.strip().startswith("grad_fn: ")]
    assert len(lines) == 2 and all("closed form = " in ln and "grad fn = " in ln for ln in lines)
    assert not any(ln.strip().startswith(("backprop:", "finite_difference:")) for ln in msg.splitlines())
    rep = check_gradients(net, p, grad_fn=_my_backprop(net, flip_layer=2), raise_on_failure=False)
    assert not rep.ok and any("b2" in f for f in rep.failures)


def _wrong_closed_form(monkeypatch, factor, names=None):
    """Make the closed form the check sees wrong by ``factor`` (for ``names``, default all)."""
    import symgrad.testing.gradcheck as gc

    from symgrad.numeric import evaluate_gradient as real

    def wrong(gradient, inp, **kw):
        v = real(gradient, inp, **kw)
        return v * factor if names is None or gradient.wrt in names else v

    _patch_evaluate(monkeypatch, wrong)


def _patch_evaluate(monkeypatch, fn):
    """The check evaluates every closed form in one batch (``evaluate_gradients``): route each
    gradient through ``fn(gradient, inp, **kw)`` instead."""
    import symgrad.testing.gradcheck as gc

    monkeypatch.setattr(gc, "evaluate_gradients", lambda gradients, inp, **kw: [fn(g, inp, **kw) for g in gradients])


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


# ------------------------------------------------------------------ the issue's example and float32


def _f32(params):
    return {k: np.asarray(v, dtype=np.float32) for k, v in params.items()}


def test_float32_softplus_closed_form_is_not_rejected():
    # Issue 10 item 6: a correct closed form, −2.3742e-4, was failed against a float32 central
    # difference of −1.43e-3 (the loss is ≈ 15).  The finite differences now run in float64.
    net = symgrad.chain(6, "softplus")
    p = sample(net, 16, seed=8, dtype=np.float32)
    with pytest.warns(PrecisionWarning):
        rep = check_gradients(net, p)
    assert rep.ok
    fd = rep.details[("finite_difference", "b1")]
    exact64 = float(backprop(net, {k: np.asarray(v, dtype=np.float64) for k, v in p.items()}).grads["b1"][0])
    assert exact64 == pytest.approx(-2.3742e-4, rel=1e-4)
    assert float(backprop(net, {k: np.asarray(v, float) for k, v in p.items()}).loss[0]) == pytest.approx(14.94, rel=1e-3)
    assert fd["closed_form"][0, 0] == pytest.approx(-2.3742e-4, rel=1e-4)
    # The finite difference agrees with the float64 gradient to its own tolerance (not 1e-2).
    assert abs(fd["value"][0, 0] - exact64) <= fd["tolerance"][0, 0] <= 1e-4 * abs(exact64)


def test_float32_gradient_off_by_5_percent_fails(monkeypatch):
    net = symgrad.chain(6, "softplus")
    p = sample(net, 16, seed=8, dtype=np.float32)
    good = backprop(net, p).grads
    with pytest.warns(PrecisionWarning), pytest.raises(GradientCheckError, match="grad_fn"):
        check_gradients(net, p, grad_fn=lambda q: {k: v * np.float32(1.05) for k, v in good.items()})
    _wrong_closed_form(monkeypatch, np.float32(1.05), names={"w3"})
    with pytest.warns(PrecisionWarning):
        rep = check_gradients(net, p, raise_on_failure=False)
    assert rep.census["finite_difference"] == (16, 16 * 12) and rep.census["backprop"] == (16, 16 * 12)
    assert {w["param"] for w in rep.worst} == {"w3"}


# ------------------------------------------------------------------ tolerances at their boundary


def _point():
    net = symgrad.chain(4, "tanh")
    p = sample(net, value={"a0": 0.7, "y": 0.2, "w1": 1.1, "w2": -0.9, "w3": 1.3, "w4": 0.8,
                           "b1": 0.1, "b2": -0.2, "b3": 0.3, "b4": 0.05})
    return net, p


def _patch_closed_form_to(monkeypatch, values):
    """The closed form the check sees becomes ``values[name]`` (arrays shaped like the gradient)."""
    import symgrad.testing.gradcheck as gc

    _patch_evaluate(monkeypatch, lambda gradient, inp, **kw: values[gradient.wrt])


@pytest.mark.parametrize("net,batch", [(symgrad.chain(4, "tanh"), 8), (symgrad.network([3, 4, 2], "softplus"), 3),
                                       (symgrad.chain(3, "sigmoid", "cross_entropy"), 5)])
@pytest.mark.parametrize("k,fails", [(1.02, True), (0.98, False)])
def test_finite_difference_tolerance_boundary(monkeypatch, net, batch, k, fails):
    """A closed form off the finite difference by k times the tolerance fails for k just above 1
    and passes just below (the tolerance does not depend on the closed form's value)."""
    p = sample(net, batch, seed=4)
    rep = check_gradients(net, p)
    values = {}
    for name in net.parameters:
        d = rep.details[("finite_difference", name)]
        cf = np.array(rep.details[("backprop", name)]["closed_form"])  # (batch, all entries)
        sign = np.where(np.arange(d["value"].shape[1]) % 2 == 0, 1.0, -1.0)
        cols = [int(np.ravel_multi_index(i, net.shape(name))) if i else 0 for i in d["index"]]
        cf[:, cols] = d["value"] + sign * k * d["tolerance"]
        values[name] = cf.reshape((batch,) + (net.shape(name) if hasattr(net, "widths") else ()))
    _patch_closed_form_to(monkeypatch, values)
    moved = check_gradients(net, p, raise_on_failure=False)
    failing, checked = moved.census["finite_difference"]
    assert checked == rep.census["finite_difference"][1]
    assert failing == (checked if fails else 0)


@pytest.mark.parametrize("k,fails", [(1.02, True), (0.98, False)])
def test_backprop_tolerance_boundary(monkeypatch, k, fails):
    import symgrad.numeric

    net = symgrad.network([3, 4, 2], "tanh")
    p = sample(net, 4, seed=2)
    rep = check_gradients(net, p)
    real = symgrad.numeric.backprop

    def moved(net_, params, **kw):
        res = real(net_, params, **kw)
        for name in res.grads:
            d = rep.details[("backprop", name)]
            res.grads[name] = (d["closed_form"] + k * d["tolerance"]).reshape(np.shape(res.grads[name]))
        return res

    monkeypatch.setattr(symgrad.numeric, "backprop", moved)
    out = check_gradients(net, p, raise_on_failure=False)
    failing, checked = out.census["backprop"]
    assert failing == (checked if fails else 0) and checked == 4 * sum(np.prod(net.shape(n)) for n in net.parameters)


@pytest.mark.parametrize("k,fails", [(1.02, True), (0.98, False)])
def test_grad_fn_tolerance_boundary_uses_the_documented_table(k, fails):
    # The float64 contract for a user's gradients is |g − cf| ≤ 1e-8 + 1e-5·|cf| (+ the closed
    # form's own rounding bound, ~1e-15 here): written out, so that a looser table fails this test.
    net, p = _point()
    cf = backprop(net, p).grads
    off = {k_: v + (-1) ** i * k * (1e-8 + 1e-5 * abs(v)) for i, (k_, v) in enumerate(cf.items())}
    rep = check_gradients(net, p, grad_fn=lambda q: off, raise_on_failure=False)
    assert rep.census["grad_fn"] == ((8 if fails else 0), 8)
    assert (TOLERANCES[np.dtype(np.float64)].rtol, TOLERANCES[np.dtype(np.float64)].atol) == (1e-5, 1e-8)


def test_derived_tolerances_are_tight_at_a_benign_point(monkeypatch):
    """Anchors for the derived tolerances (a 10× looser bound fails here): at this point the
    backprop bound is (K + forward terms)·u ≈ 1e-14·|cf| (K ≈ 20 roundings on a depth-4 chain)
    and the finite-difference one ≈ 2e-10·|cf| at most (rounding u·|C|/(h/8), h = 1e-3)."""
    import symgrad.numeric

    net, p = _point()
    real = symgrad.numeric.backprop

    def off(net_, params, **kw):
        res = real(net_, params, **kw)
        res.grads = {k: v * (1 + 1e-13) for k, v in res.grads.items()}
        return res

    monkeypatch.setattr(symgrad.numeric, "backprop", off)
    assert check_gradients(net, p, raise_on_failure=False).census["backprop"] == (8, 8)
    monkeypatch.undo()
    _wrong_closed_form(monkeypatch, 1 + 1e-9)
    assert check_gradients(net, p, raise_on_failure=False).census["finite_difference"] == (8, 8)


# ------------------------------------------------------------------ kinks, exact zeros, large losses


def _kink_point(act="relu"):
    # z1 = w1·a0 + b1 = 0 exactly: C is not differentiable in b1 there (left ∂C/∂b1 = 0 for ReLU,
    # right = w2·φ'(z2)·(a2 − y) = 2·1·0.1 = 0.2).
    net = symgrad.chain(2, act)
    return net, sample(net, value={"w1": 1.0, "a0": 0.5, "b1": -0.5, "w2": 2.0, "b2": 0.1, "y": 0.0})


@pytest.mark.parametrize("fast", [False, True])
def test_a_kink_passes_with_the_left_derivative(fast):
    net, p = _kink_point()
    rep = check_gradients(net, p, fast=fast)
    assert rep.ok and float(backprop(net, p).grads["b1"]) == 0.0


@pytest.mark.parametrize("value,ok", [(0.0, True), (0.1, True), (0.2, True), (0.19, True), (0.201, False), (-0.001, False), (0.3, False)])
def test_at_a_kink_a_value_between_the_one_sided_differences_passes(monkeypatch, value, ok):
    net, p = _kink_point()
    real = {n: np.asarray(backprop(net, p).grads[n]) for n in net.parameters}
    _patch_closed_form_to(monkeypatch, {**real, "b1": np.float64(value)})
    rep = check_gradients(net, p, wrt="b1", raise_on_failure=False)
    assert rep.census["finite_difference"] == ((0 if ok else 1), 1)


def test_a_leaky_relu_kink_accepts_both_one_sided_derivatives(monkeypatch):
    net, p = _kink_point("leaky_relu")  # left ∂C/∂b1 = α·0.2 = 0.002 (α = 0.01), right 0.2
    left = float(backprop(net, p).grads["b1"])
    assert left == pytest.approx(0.002)
    assert check_gradients(net, p).ok
    for value, ok in [(0.2, True), (0.05, True), (0.0015, False), (0.25, False)]:
        _patch_closed_form_to(monkeypatch, {"b1": np.float64(value)})
        assert check_gradients(net, p, wrt="b1", raise_on_failure=False).ok is ok, value


def test_exact_zero_gradients_pass_and_a_nonzero_one_there_fails(monkeypatch):
    # a_L = y: every gradient is exactly 0; a dead ReLU: ∂C/∂b1 = 0 exactly.
    net = symgrad.chain(3, "tanh")
    p = sample(net, value={"w1": 1.0, "w2": 1.0, "w3": 1.0, "b1": 0.0, "b2": 0.0, "b3": 0.0, "a0": 0.0, "y": 0.0})
    assert all(float(v) == 0.0 for v in backprop(net, p).grads.values())
    assert check_gradients(net, p).ok and check_gradients(net, p, fast=True).ok
    dead = symgrad.chain(2, "relu")
    q = sample(dead, value={"w1": 1.0, "a0": 0.0, "b1": -0.5, "w2": 2.0, "b2": 0.1, "y": 0.0})
    assert check_gradients(dead, q).ok
    _patch_closed_form_to(monkeypatch, {n: np.float64(1e-9) for n in net.parameters})
    rep = check_gradients(net, p, raise_on_failure=False)
    assert rep.census["finite_difference"] == (6, 6)


def test_a_large_loss_does_not_loosen_the_check(monkeypatch):
    # C ≈ 4.5e8: each loss value carries rounding ≈ 17u·|C|, so a finite difference with step h/8
    # resolves ∂C/∂p to ≈ u·|C|/(h/8) ≈ 0.05 in absolute terms: 5e-11 relative for ∂C/∂w1 ≈ 9e7,
    # 2e-6 for ∂C/∂b3 ≈ 3e4.  The tolerance follows the loss's magnitude, nothing else.
    net = symgrad.chain(3, "identity")
    p = sample(net, value={"w1": 10.0, "w2": 10.0, "w3": 10.0, "b1": 1.0, "b2": 1.0, "b3": 1.0, "a0": 30.0, "y": -5.0})
    assert float(backprop(net, p).loss) > 4e8
    rep = check_gradients(net, p)
    assert rep.ok
    rel = {n: float(rep.details[("finite_difference", n)]["tolerance"][0, 0] / abs(rep.details[("finite_difference", n)]["closed_form"][0, 0]))
           for n in net.parameters}
    assert rel["w1"] < 2e-10 and rel["b3"] < 1e-5
    _wrong_closed_form(monkeypatch, 1 + 1e-5)
    assert check_gradients(net, p, raise_on_failure=False).census["finite_difference"] == (6, 6)


def test_steep_exploding_chain_shrinks_the_step():
    # |∂C/∂b1| = 2^26 while C ≤ 1/2: h = 1e-3 is far outside the asymptotic range.
    net = symgrad.chain(30, "sigmoid")
    p = sample(net, value={**{"w%d" % j: 8.0 for j in range(1, 31)}, **{"b%d" % j: -4.0 for j in range(1, 31)}, "a0": 0.5, "y": 0.0})
    rep = check_gradients(net, p)
    assert rep.ok and "down to" in rep.step
    assert check_gradients(net, p, fast=True).ok


# ------------------------------------------------------------------ the bound against a high-precision reference


def _mp_gradients(net, point, dps=40):
    """∂C/∂p for a chain by mpmath: exact forward pass at `dps` digits, derivative by mpmath.diff."""
    import mpmath

    mp = mpmath.mp  # precision set by workdps below (the global setting is left alone)
    phi = {
        "sigmoid": lambda z: 1 / (1 + mp.exp(-z)),
        "tanh": mp.tanh,
        "softplus": lambda z: mp.log(1 + mp.exp(z)),
        "gelu": lambda z: z / 2 * (1 + mp.erf(z / mp.sqrt(2))),
        "silu": lambda z: z / (1 + mp.exp(-z)),
        "softsign": lambda z: z / (1 + abs(z)),
    }

    def loss(vals):
        a = vals["a0"]
        for j, act in enumerate(net.activations, start=1):
            a = phi[act.name](vals["w%d" % j] * a + vals["b%d" % j])
        y = vals["y"]
        if net.loss.name == "cross_entropy":
            return -(y * mp.log(a) + (1 - y) * mp.log(1 - a))
        return (a - y) ** 2 / 2

    exact = {k: mp.mpf(float(v)) for k, v in point.items()}
    out = {}
    with mpmath.workdps(dps):
        for name in net.parameters:
            out[name] = mp.diff(lambda x: loss({**exact, name: x}), exact[name])
    return out


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "softplus", "gelu", "silu", "softsign"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_error_bound_holds_against_a_high_precision_reference(act, dtype):
    """|closed form − exact| ≤ E and |backprop − exact| ≤ E, entry by entry, with E the running
    error bound (the backprop tolerance is 2E), at random points including saturated ones."""
    from symgrad.testing.gradcheck import _ErrorModel
    from symgrad.numeric import evaluate_gradient
    from symgrad.numeric.inputs import _validate

    net = symgrad.chain(5, act)
    batch = sample(net, 3, seed=11, init="normal")
    batch = {k: np.asarray(v, dtype=np.float64) * (3.0 if k.startswith("w") else 1.0) for k, v in batch.items()}
    batch = {k: v.astype(dtype) for k, v in batch.items()}
    inp = _validate(net, batch)
    E = _ErrorModel(inp, float(np.finfo(dtype).eps) / 2)
    bp = backprop(net, batch).grads
    for i in range(3):
        exact = _mp_gradients(net, {k: np.broadcast_to(v, (3,))[i] for k, v in batch.items()})
        for name in net.parameters:
            e = float(np.broadcast_to(E.bound(name), (3,))[i])
            ref = float(exact[name])
            cf = float(np.broadcast_to(evaluate_gradient(net.gradient(name), batch), (3,))[i])
            assert abs(cf - ref) <= e, (name, i, cf, ref, e)
            assert abs(float(bp[name][i]) - ref) <= e, (name, i, float(bp[name][i]), ref, e)


# ------------------------------------------------------------------ the check's own arguments


@pytest.mark.parametrize("kw,shown", [
    ({"fd_entries": 0}, "fd_entries=0"), ({"fd_entries": -3}, "fd_entries=-3"), ({"fd_entries": 2.5}, "fd_entries=2.5"),
    ({"fd_entries": True}, "fd_entries=True"),
    ({"eps": 0}, "eps=0"), ({"eps": -1}, "eps=-1"), ({"eps": "x"}, "eps='x'"), ({"eps": float("nan")}, "eps=nan"),
    ({"eps": float("inf")}, "eps=inf"), ({"eps": 2.0}, "eps=2.0"), ({"eps": True}, "eps=True"),
    ({"rtol": -1}, "rtol=-1"), ({"rtol": "1e-5"}, "rtol='1e-5'"), ({"rtol": float("inf")}, "rtol=inf"),
    ({"atol": float("nan")}, "atol=nan"), ({"atol": -1e-9}, "atol=-1e-09"),
    ({"wrt": "w9"}, "'w9'"), ({"wrt": ["b1", "q"]}, "'q'"), ({"wrt": []}, "wrt=[]"), ({"wrt": 3}, "wrt=3"),
    ({"fast": "yes"}, "fast='yes'"), ({"directions": 0}, "directions=0"), ({"seed": -1}, "seed=-1"),
    ({"seed": 1.5}, "seed=1.5"), ({"raise_on_failure": None}, "raise_on_failure=None"), ({"grad_fn": 3}, "grad_fn=3"),
])
def test_bad_check_arguments_raise_invalid_argument(kw, shown):
    net = symgrad.chain(2)
    with pytest.raises(symgrad.InvalidArgument) as exc:
        check_gradients(net, sample(net, 2, seed=0), **kw)
    assert shown in str(exc.value) and "check_gradients" in str(exc.value)


def test_grad_fn_results_are_validated():
    net = symgrad.chain(2)
    p = sample(net, 3, seed=0)
    with pytest.raises(symgrad.InvalidArgument, match="mapping"):
        check_gradients(net, p, grad_fn=lambda q: [1.0])
    with pytest.raises(symgrad.InvalidArgument, match="no gradient for"):
        check_gradients(net, p, grad_fn=lambda q: {"w1": 0.0})
    with pytest.raises(symgrad.InvalidArgument, match="shape"):
        check_gradients(net, p, grad_fn=lambda q: {n: np.zeros(5) for n in net.parameters})


# ------------------------------------------------------------------ the census on failure


def test_a_failure_reports_a_census_the_worst_entries_and_the_step(monkeypatch):
    net = symgrad.network([3, 4, 2], "tanh")
    p = sample(net, 5, seed=1)
    _wrong_closed_form(monkeypatch, 1.01, names={"W2"})
    rep = check_gradients(net, p, raise_on_failure=False)
    assert rep.census["finite_difference"] == (5 * 8, 5 * (12 + 8 + 4 + 2))
    assert rep.census["backprop"] == (5 * 8, 5 * (12 + 8 + 4 + 2))
    assert len(rep.worst) == 5 and {w["param"] for w in rep.worst} == {"W2"}
    w = rep.worst[0]
    assert set(w) >= {"kind", "param", "index", "batch", "closed_form", "backprop", "value", "rel_error", "tolerance"}
    assert w["ratio"] >= rep.worst[-1]["ratio"] > 1 and len(w["index"]) == 2
    assert "h = 0.001" in rep.step
    with pytest.raises(GradientCheckError) as exc:
        check_gradients(net, p)
    msg = str(exc.value)
    assert "finite_difference 40 of 130" in msg and "backprop 40 of 130" in msg and "h = 0.001" in msg
    assert msg.count("worst: ") == 5 and "∂C/∂W2[" in msg and "(40 of 40 entries fail)" in msg


# ------------------------------------------------------------------ fast mode


@pytest.mark.parametrize("net", [symgrad.chain(6, "tanh"), symgrad.chain(4, "sigmoid", "cross_entropy"),
                                 symgrad.network([3, 5, 4, 2], "softplus"), symgrad.chain(5, "relu")])
def test_fast_mode_passes_correct_gradients(net):
    rep = check_gradients(net, sample(net, 6, seed=3), fast=True)
    assert rep.ok and rep.mode == "fast" and rep.census["finite_difference"] == (0, 6 * 4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_mode_finds_one_wrong_entry(monkeypatch, seed):
    # One entry of one weight matrix off by 1%: the error vector e has one component, and
    # ⟨e, v⟩ is far outside the tolerance for almost every direction (module docstring).
    import symgrad.testing.gradcheck as gc

    net = symgrad.network([3, 5, 4, 2], "softplus")
    p = sample(net, 6, seed=3)
    from symgrad.numeric import evaluate_gradient as real

    def wrong(gradient, inp, **kw):
        v = np.array(real(gradient, inp, **kw))
        if gradient.wrt == "W2":
            v[..., 1, 3] *= 1.01
        return v

    _patch_evaluate(monkeypatch, wrong)
    rep = check_gradients(net, p, fast=True, seed=seed, raise_on_failure=False)
    assert rep.census["finite_difference"][0] >= 6 * 4 - 1


def test_fast_mode_is_seeded():
    net = symgrad.chain(5, "tanh")
    p = sample(net, 3, seed=0)
    a, b, c = (check_gradients(net, p, fast=True, seed=s).details[("finite_difference", "<v, grad>")]["value"] for s in (7, 7, 8))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_fast_mode_evaluates_o_l_losses_entry_mode_o_l2(monkeypatch):
    """Loss evaluations (each one forward pass of O(L)): 8·P + 1 per ladder for P entries, or
    8·directions + 1 in fast mode, whatever the depth."""
    import symgrad.testing.gradcheck as gc

    counted = []
    real = gc._losses
    monkeypatch.setattr(gc, "_losses", lambda net, base, n, perts, *a: counted.append(len(perts)) or real(net, base, n, perts, *a))
    for depth in (10, 40):
        net = symgrad.chain(depth, "tanh")
        p = sample(net, 2, seed=0, init="xavier")
        counted.clear()
        check_gradients(net, p)
        assert counted[0] == 8 * 2 * depth + 1
        counted.clear()
        check_gradients(net, p, fast=True, directions=3)
        assert counted == [8 * 3 + 1]


@pytest.mark.parametrize("fast", [False, True])
def test_kinks_closer_than_any_step_are_undecided_not_failed(monkeypatch, fast):
    # Zero biases and leaky ReLU: z_l shrinks geometrically (|z_12| ~ 1e-20), so every step,
    # however small, moves some z_l across 0: C is not smooth anywhere near p along the
    # perturbation, and finite differences cannot decide.  Such entries are counted, not failed;
    # closed form vs backprop still decides them.
    net = symgrad.chain(12, "leaky_relu")
    p = sample(net, 8, seed=0, init="xavier")
    assert all(float(np.max(np.abs(p["b%d" % j]))) == 0.0 for j in range(1, 13))
    rep = check_gradients(net, p, fast=fast)
    assert rep.ok
    _wrong_closed_form(monkeypatch, 1.001, names={"w7"})
    bad = check_gradients(net, p, fast=fast, raise_on_failure=False)
    assert bad.census["backprop"] == (8, 8 * 24)


def test_fast_mode_tolerance_is_tight_at_a_benign_point(monkeypatch):
    # The directional tolerances here are ≈ 0.4–4.1e-10·|⟨cf, v⟩|, almost all of it the rounding
    # bound u·|C|/(h/8) (computed, not measured); a closed form 2e-9 off fails along every
    # direction, and a 10× looser tolerance would let at least one direction through.
    net, p = _point()
    rep = check_gradients(net, p, fast=True)
    d = rep.details[("finite_difference", "<v, grad>")]
    assert np.all(d["tolerance"] <= 1e-9 * np.abs(d["closed_form"]))
    _wrong_closed_form(monkeypatch, 1 + 2e-9)
    assert check_gradients(net, p, fast=True, raise_on_failure=False).census["finite_difference"] == (4, 4)


def _mp_dense_gradients(net, point, dps=40):
    """∂C/∂p entry by entry for a dense network by mpmath (forward at `dps` digits, mpmath.diff)."""
    import mpmath

    mp = mpmath.mp  # precision set by workdps around each use (the global setting is left alone)
    phi = {"sigmoid": lambda z: 1 / (1 + mp.exp(-z)), "tanh": mp.tanh, "softplus": lambda z: mp.log(1 + mp.exp(z))}
    L = net.depth

    def loss(vals):
        a = [mp.mpf(float(x)) for x in vals["a0"]]
        for l in range(1, L + 1):
            W, b = vals["W%d" % l], vals["b%d" % l]
            z = [sum(W[i][j] * a[j] for j in range(len(a))) + b[i] for i in range(len(b))]
            a = [phi[net.activations[l - 1].name](zi) for zi in z]
        y = [mp.mpf(float(v)) for v in vals["y"]]
        if net.loss.name == "cross_entropy":
            return -sum(yi * mp.log(ai) + (1 - yi) * mp.log(1 - ai) for ai, yi in zip(a, y))
        return sum((ai - yi) ** 2 for ai, yi in zip(a, y)) / 2

    exact = {k: (np.vectorize(lambda x: mp.mpf(float(x)), otypes=[object])(np.asarray(v)) if k not in ("a0", "y") else np.asarray(v))
             for k, v in point.items()}  # float64 → mpf is exact at any precision
    out = {}
    for name in net.parameters:
        g = np.empty(np.shape(exact[name]), dtype=object)
        for idx in np.ndindex(*g.shape):
            def f(x, name=name, idx=idx):
                vals = {k: (v.tolist() if k not in ("a0", "y") else v) for k, v in exact.items()}
                moved = exact[name].copy()
                moved[idx] = x
                vals[name] = moved.tolist()
                return loss(vals)

            with mpmath.workdps(dps):
                g[idx] = mp.diff(f, exact[name][idx])
        out[name] = g
    return out


@pytest.mark.parametrize("net", [symgrad.network([2, 3, 2], "tanh"), symgrad.network([3, 2, 2], "softplus"),
                                 symgrad.network([2, 3, 1], "sigmoid", "cross_entropy")])
def test_the_dense_error_bound_holds_against_a_high_precision_reference(net):
    from symgrad.testing.gradcheck import _ErrorModel
    from symgrad.numeric import evaluate_gradient
    from symgrad.numeric.inputs import _validate

    p = {k: np.asarray(v, dtype=np.float64) * (2.5 if k.startswith("W") else 1.0) for k, v in sample(net, seed=5).items()}
    E = _ErrorModel(_validate(net, p), 2.0 ** -53)
    bp = backprop(net, p).grads
    exact = _mp_dense_gradients(net, p)
    for name in net.parameters:
        ref = np.asarray(exact[name], dtype=np.float64)
        cf = np.asarray(evaluate_gradient(net.gradient(name), p), dtype=np.float64)
        assert np.all(np.abs(cf - ref) <= E.bound(name)), name
        assert np.all(np.abs(np.asarray(bp[name]) - ref) <= E.bound(name)), name


@pytest.mark.parametrize("fast", [False, True])
def test_several_units_exactly_at_their_kink(fast):
    # He init has zero biases; here every z1 < 0, so a1 = 0 and all four z2 = b2 = 0 exactly.
    # A random direction moves all four off the kink at once: not decidable by one-sided
    # differences (the convention takes all four as inactive); single entries are.
    net = symgrad.network([2, 4, 4, 1], ["relu", "relu", "sigmoid"], "cross_entropy")
    p = sample(net, 4, seed=0, init="he")
    assert np.all(symgrad.forward(net, p)["z2"][0] == 0.0)
    rep = check_gradients(net, p, fast=fast)
    assert rep.ok
    if fast:
        assert rep.undecided["finite_difference"] >= 1


@pytest.mark.parametrize("bad", [lambda v: complex(float(np.reshape(v, -1)[0])), lambda v: "0.5", lambda v: None, lambda v: np.asarray(v, dtype=complex)])
def test_grad_fn_returning_non_real_gradients_is_refused_by_name(bad):
    net = symgrad.chain(2)
    p = sample(net, 1, seed=0)
    with pytest.raises(symgrad.InvalidArgument, match="grad_fn's gradient for 'w1' must be real numbers"):
        check_gradients(net, p, grad_fn=lambda q: {k: bad(v) for k, v in backprop(net, q).grads.items()})


def test_a_point_within_one_step_of_the_losses_domain_edge_is_refused_clearly():
    """a_L = 1e-310 behind an identity output with cross-entropy: the step b1 ± 1e-3 leaves
    (0, 1).  The refusal says so (it named a 'batch index 2' the caller never had)."""
    net = symgrad.chain(1, "identity", "cross_entropy")
    with pytest.raises(symgrad.InvalidArgument, match="leaves the loss's domain.*within one step of that edge") as exc:
        check_gradients(net, {"a0": 1.0, "w1": 0.0, "b1": 1e-310, "y": 0.0})
    assert "batch index" not in str(exc.value)
