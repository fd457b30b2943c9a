"""Issue #14: a softmax output layer with the log-likelihood cost C = −Σ_i y_i ln a^L_i
(Nielsen ch. 3 eqs. 78–82): δ^L = a^L − y given Σ y = 1, verified exactly against sympy.diff,
computed stably from the logits, and checked against PyTorch's cross_entropy on logits."""

from __future__ import annotations

import warnings
import zlib

import mpmath
import numpy as np
import pytest
import sympy

import symgrad
from symgrad.numeric import backprop, evaluate_gradient, evaluate_gradients, sample
from symgrad.spec import activations as A
from symgrad.symbolic import verify as V
from symgrad.symbolic.verify import verify_gradient

from ._mpref import C_VAL, U, _factor_rel, assert_within

SM = symgrad.activation("softmax")
HIDDEN = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu", "gelu", "softsign", "identity", "selu"]


def net_of(widths, hidden="tanh"):
    L = len(widths) - 1
    return symgrad.network(widths, [hidden] * (L - 1) + ["softmax"], "log_likelihood")


# --- the activation and the loss: facts live on the objects --------------------------------------


def test_softmax_is_an_output_only_activation_kept_out_of_the_elementwise_list():
    assert SM.output_only and not symgrad.activation("sigmoid").output_only
    assert "softmax" not in symgrad.BUILTIN_ACTIVATIONS and A.OUTPUT_ACTIVATIONS == ("softmax",)
    assert A.from_token(SM.token) == SM and SM.latex_name == r"\operatorname{softmax}"
    z1, z2 = sympy.symbols("z1 z2", real=True)
    assert SM.vector([z1, z2]) == [sympy.exp(z1) / (sympy.exp(z1) + sympy.exp(z2)), sympy.exp(z2) / (sympy.exp(z1) + sympy.exp(z2))]
    with pytest.raises(symgrad.InvalidArgument, match="not elementwise.*act.vector"):
        SM(z1)
    with pytest.raises(symgrad.InvalidArgument):
        SM.vector(["__import__('os')"])  # strings are never parsed


def test_log_likelihood_loss_facts():
    ll = symgrad.loss("log_likelihood")
    assert symgrad.loss("nll") is ll and ll.on_simplex and "Σ_i y_i = 1" in ll.assumption
    assert ll.cancels_with(SM) and not ll.cancels_with(symgrad.activation("sigmoid"))
    assert not symgrad.loss("quadratic").cancels_with(SM) and not symgrad.loss("cross_entropy").cancels_with(SM)
    from symgrad.spec.losses import SIMPLEX_LOSSES

    assert SIMPLEX_LOSSES == ("log_likelihood", "nll") and "log_likelihood" not in symgrad.BUILTIN_LOSSES
    a, y = sympy.symbols("a y", positive=True)
    assert ll.cost(a, y) == -y * sympy.log(a) and ll.dcost(a, y) == sympy.diff(ll.cost(a, y), a)


# --- bad input: InvalidArgument naming the value and the fix ------------------------------------


@pytest.mark.parametrize("make,match", [
    (lambda: symgrad.network([2, 3, 3], "softmax", "log_likelihood"), r"hidden layer 1 is output-only.*activation=\['tanh', 'softmax'\]"),
    (lambda: symgrad.network([2, 3, 3, 2], ["tanh", "softmax", "softmax"], "log_likelihood"), "hidden layer 2"),
    (lambda: symgrad.chain(2, ["sigmoid", "softmax"], "log_likelihood"), "constant e\\^z/e\\^z = 1.*symgrad.network"),
    (lambda: symgrad.chain(1, "softmax"), "constant"),
    (lambda: symgrad.chain(2, "sigmoid", "log_likelihood"), "single-unit chain.*symgrad.network"),
    (lambda: symgrad.network([2, 1], "softmax", "log_likelihood"), r"width 1 is the constant 1.*widths=\[2, 2\]"),
    (lambda: symgrad.network([2, 3], "softmax", "quadratic"), "pairs only with loss='log_likelihood'.*not loss='quadratic'"),
    (lambda: symgrad.network([2, 3], "softmax", "cross_entropy"), "not loss='cross_entropy'"),
    (lambda: symgrad.network([2, 3, 2], "sigmoid", "log_likelihood"), r"output activation is 'sigmoid'.*\['sigmoid', 'softmax'\]"),
])
def test_refusals_name_the_value_and_the_fix(make, match):
    with pytest.raises(symgrad.InvalidArgument, match=match):
        make()


@pytest.mark.parametrize("y,match", [
    ([0.5, 0.6, 0.0], "sums to 1.1.*normalise"),
    ([1.2, -0.2, 0.0], "-0.2 at index \\(1,\\).*probability vector"),
    ([0.0, 0.0, 0.0], "sums to 0.0"),
    ([1 / 3, 1 / 3, 1 / 3 + 1e-12], "sums to"),
])
def test_targets_that_are_not_probability_vectors_are_refused(y, match):
    net = net_of([2, 3])
    p = sample(net, seed=0)
    p["y"] = np.array(y)
    with pytest.raises(symgrad.InvalidArgument, match=match):
        backprop(net, p)
    with pytest.raises(symgrad.InvalidArgument, match=match):
        evaluate_gradient(net.gradient("b1"), p)


def test_a_target_that_sums_to_one_within_rounding_is_accepted():
    net = net_of([2, 3])
    p = sample(net, seed=0)
    p["y"] = np.array([0.7, 0.2, 0.1])  # sums to 0.9999999999999999 in float64
    assert np.sum(p["y"]) != 1.0
    backprop(net, p)
    assert np.allclose(np.sum(sample(net, 7, seed=1)["y"], axis=-1), 1.0, rtol=0, atol=4 * U)


# --- the closed form and its exact verification ----------------------------------------------------


def test_the_output_factor_is_a_minus_y_and_states_its_assumption():
    net = net_of([2, 3, 2])
    g = net.gradient("W1")
    assert str(g.factors[-2]) == "a2 - y" and g.assumptions == (symgrad.loss("log_likelihood").assumption,)
    assert symgrad.network([2, 3, 1], "sigmoid", "cross_entropy").gradient("b1").assumptions == ()


@pytest.mark.parametrize("hidden", HIDDEN)
def test_exact_verification_every_hidden_activation_every_parameter(hidden):
    for widths in ([2, 3, 2], [1, 2, 3]):
        net = net_of(widths, hidden)
        for name in net.parameters + ("a0", "W1[1,0]", "b2[0]"):
            r = verify_gradient(net, name)
            assert r.status == "exact match", (widths, hidden, name, r)
            assert "Σ_i y_i = 1" in r.reason


@pytest.mark.parametrize("widths,hidden", [([2, 3], None), ([3, 2], None), ([2, 2, 2, 3], "sigmoid"), ([1, 2, 2, 2], "tanh")])
def test_exact_verification_depths_one_to_three(widths, hidden):
    net = net_of(widths, hidden or "tanh")
    for name in net.parameters + ("a0",):
        assert verify_gradient(net, name).ok, (widths, name)


def test_without_the_assumption_the_closed_form_is_disproved(monkeypatch):
    """Σ y = 1 is needed: with y free (random rationals) a − y is not sympy.diff's gradient."""
    monkeypatch.setattr(V, "_target_on_simplex", lambda net: None)
    r = verify_gradient(net_of([2, 3, 2]), "b2")
    assert r.status == "mismatch", r


def test_a_wrong_output_factor_is_a_mismatch():
    net = net_of([2, 3, 2])
    g = net.gradient("b2")
    wrong = symgrad.Gradient(net, "b2", (sympy.MatAdd(g.factors[-1].args[0], g.factors[-1].args[1], g.factors[-1].args[1]),))
    assert verify_gradient(net, wrong).status == "mismatch"


# --- numerics: stable, against mpmath and PyTorch -----------------------------------------------


def _mp_softmax(z, prec=80):
    with mpmath.workdps(prec):
        zs = [mpmath.mpf(float(v)) for v in z]
        m = max(zs)
        e = [mpmath.exp(v - m) for v in zs]
        s = mpmath.fsum(e)
        return [x / s for x in e], [v - m - mpmath.log(s) for v in zs]


LOGITS = [
    [0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [40.0, 0.0, 0.0], [800.0, 0.0, -3.0], [1e308, -1e308, 0.0],
    [-1e308, -1e308, 1e308], [1e308, 1e308, -5.0], [-745.0, 0.0, 745.0], [1e-300, -1e-300, 0.0],
]


@pytest.mark.parametrize("z", LOGITS)
def test_kernels_match_mpmath_without_warnings_for_extreme_logits(z):
    z = np.array(z)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a, la, g, lg = SM.value(z), SM.log_abs_value(z), SM.grad(z), SM.log_abs_grad(z)
        targets = [np.eye(3)[k] for k in range(3)] + [np.array([0.2, 0.3, 0.5])]
        res = [SM.minus_target(z, y) for y in targets]
    ra, rla = _mp_softmax(z)
    for i in range(3):
        assert a[i] == pytest.approx(float(ra[i]), rel=8 * U, abs=1e-300)
        if mpmath.isfinite(rla[i]) and abs(rla[i]) < 1e308:
            # log a_i = (z_i − m) − log S: the subtraction z_i − m rounds once, log1p(others) 1 ulp
            assert la[i] == pytest.approx(float(rla[i]), rel=4 * U, abs=4 * U)
        d = ra[i] * (1 - ra[i])
        assert g[i] == pytest.approx(float(d), rel=16 * U, abs=1e-300)
        if d > 0 and abs(mpmath.log(d)) < 1e300:
            assert lg[i] == pytest.approx(float(mpmath.log(d)), rel=8 * U, abs=8 * U)
    for y, (val, lv, sg) in zip(targets, res):
        assert not np.isnan(val).any() and not np.isnan(lv).any()
        with mpmath.workdps(80):
            exact = [ra[i] - mpmath.mpf(float(y[i])) for i in range(3)]
        for i in range(3):
            # a − y to a few u of its own size at the top unit (no cancellation), else of max(a, y)
            assert val[i] == pytest.approx(float(exact[i]), rel=8 * U, abs=8 * U * float(abs(ra[i]) + y[i]) if y[i] not in (0, 1) else 1e-300)
            if exact[i] != 0:
                assert sg[i] == float(mpmath.sign(exact[i]))
                if abs(mpmath.log(abs(exact[i]))) < 1e300 and y[i] in (0.0, 1.0):
                    assert lv[i] == pytest.approx(float(mpmath.log(abs(exact[i]))), rel=8 * U, abs=8 * U)


def test_one_hot_residual_keeps_its_digits_where_a_rounds_to_one():
    """a_y − 1 = −Σ_{j≠y} a_j: softmax([40, 0, 0]) − e_0 is −8.5e-18, not 0 (cf. σ(40) − 1)."""
    z = np.array([[40.0, 0.0, 0.0]])
    net = symgrad.network([3, 3], "softmax", "log_likelihood")
    p = {"a0": z[0], "y": np.array([1.0, 0.0, 0.0]), "W1": np.eye(3), "b1": np.zeros(3)}
    r = backprop(net, p)
    assert r.grads["b1"][0] == pytest.approx(-2 * float(mpmath.exp(-40) / (1 + 2 * mpmath.exp(-40))), rel=8 * U)
    assert r.loss == pytest.approx(float(mpmath.log1p(2 * mpmath.exp(-40))), rel=8 * U)


@pytest.mark.parametrize("log_space", [False, True])
def test_backprop_closed_form_and_log_space_for_huge_logits(log_space):
    net = symgrad.network([2, 3], "softmax", "log_likelihood")
    p = {"a0": np.array([1.0, 1.0]), "y": np.array([0.0, 1.0, 0.0]), "W1": np.array([[1e307, 1e307], [-1e307, -1e307], [0.0, 0.0]]),
         "b1": np.zeros(3)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = backprop(net, p, log_space=log_space)
        assert r.loss == pytest.approx(4e307, rel=4 * U)  # C = lse(z) − z_1 = 2e307 + 2e307
        assert np.array_equal(r.grads["b1"], [1.0, -1.0, 0.0])
        v, sl = evaluate_gradient(net.gradient("b1"), p, log_space=True)
        assert np.array_equal(v, [1.0, -1.0, 0.0]) and sl.log_abs[2] == pytest.approx(-2e307) and sl.sign[2] == 1
        p["W1"] = np.array([[800.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
        p["y"] = np.array([1.0, 0.0, 0.0])
        r = backprop(net, p, log_space=True)
        # δ_0 = −2e^{−800}/(1 + 2e^{−800}) underflows to −0; its log is finite
        assert r.signlog("b1").sign[0] == -1 and r.signlog("b1").log_abs[0] == pytest.approx(-800 + np.log(2), rel=4 * U)
        p["y"] = np.array([0.0, 0.0, 1.0])
        r = backprop(net, p)
        assert r.loss == pytest.approx(800.0, rel=4 * U) and r.grads["b1"][0] == 1.0 and r.grads["b1"][2] == -1.0


@pytest.mark.parametrize("hidden", ["tanh", "sigmoid", "relu", "gelu"])
def test_closed_form_and_check_gradients_agree_with_backprop(hidden):
    net = net_of([3, 4, 3, 4], hidden)
    p = sample(net, 6, seed=5)
    r = backprop(net, p)
    got = evaluate_gradients([net.gradient(n) for n in net.parameters], p)
    for g, n in zip(got, net.parameters):
        # both are products of the same factors, each rounded; 64 u covers the few dozen roundings
        assert np.allclose(g, r.grads[n], rtol=64 * U, atol=64 * U * np.max(np.abs(r.grads[n])))
    symgrad.testing.check_gradients(net, p)
    p["y"] = np.eye(4)[[0, 1, 2, 3, 0, 1]]  # one-hot
    symgrad.testing.check_gradients(net, p)


# --- PyTorch: F.cross_entropy on logits -------------------------------------------------------------


torch = pytest.importorskip("torch")


def _tolerance(net, p, torch_like):
    with np.errstate(all="ignore"):  # a kink within Δz is an infinite bound (0·inf where M = 0 is masked)
        return _tolerance_model(net, p, torch_like)


def _tolerance_model(net, p, torch_like):
    """Forward-error bounds (tests/_mpref.py's model) with the softmax output: a computed a_i is
    e^{fl(z_i − m)}/S, so Δa_i ≤ a_i (Δz_i + Σ_j a_j Δz_j) + a_i u (C_VAL + 2(|z_i| + max|z|)) (the
    rounding of z_i − m is amplified by the exponential), and δ^L = a − y adds u|a − y|."""
    L = net.depth
    f = lambda k: np.asarray(p[k], dtype=np.float64)  # noqa: E731
    mv = lambda W, v: np.einsum("...ij,...j->...i", W, v)  # noqa: E731
    vm = lambda W, v: np.einsum("...ij,...i->...j", W, v)  # noqa: E731
    a, da = f("a0"), np.zeros_like(f("a0"))
    As, dAs, Zs, dZ = [a], [da], [], []
    for l, act in enumerate(net.activations, start=1):
        W, b = f("W%d" % l), f("b%d" % l)
        z = mv(W, a) + b
        dz = mv(np.abs(W), da) + U * (W.shape[-1] + 2) * (mv(np.abs(W), np.abs(a)) + np.abs(b))
        a = act.value(z)
        if act.output_only:
            zmax = np.max(np.abs(z), axis=-1, keepdims=True)
            da = a * (dz + np.sum(a * dz, axis=-1, keepdims=True)) + a * U * (C_VAL + 2 * (np.abs(z) + zmax))
        else:
            da = np.abs(act.grad(z)) * dz + C_VAL * U * np.abs(a)
            if torch_like:
                da = da + 8 * U * (1 + np.abs(z))
        Zs.append(z), dZ.append(dz), As.append(a), dAs.append(da)
    M = np.abs(As[-1] - f("y"))
    E = dAs[-1] + 2 * U * (M + f("y"))
    tol = {}
    for l in range(L, 0, -1):
        tol["b%d" % l] = E
        ap, dap = np.abs(As[l - 1]), dAs[l - 1]
        tol["W%d" % l] = E[..., :, None] * ap[..., None, :] + M[..., :, None] * (dap + U * ap)[..., None, :]
        if l > 1:
            W = np.abs(f("W%d" % l))
            Mv = vm(W, M)
            Ev = vm(W, E) + U * (W.shape[-2] + 2) * Mv
            act = net.activations[l - 2]
            g = np.abs(act.grad(Zs[l - 2]))
            M = g * Mv
            E = g * Ev + np.where(M == 0, 0.0, M * _factor_rel(act, Zs[l - 2], dZ[l - 2], torch_like))
    z, y = Zs[-1], f("y")
    zmax = np.max(np.abs(z), axis=-1)
    # C = Σ_i y_i (lse(z) − z_i): first order Σ|a_i − y_i|Δz_i, and (n + 8) u of the magnitudes summed
    tol["loss"] = np.sum(np.abs(As[-1] - y) * dZ[-1], axis=-1) + (z.shape[-1] + 8) * U * (
        np.sum(np.abs(y * z), axis=-1) + zmax + 1.0) * 2
    return tol


_TORCH_ACTS = {"tanh": "tanh", "sigmoid": "sigmoid", "relu": "relu", "softplus": "softplus", "identity": None}


@pytest.mark.parametrize("hidden", list(_TORCH_ACTS))
@pytest.mark.parametrize("target", ["one_hot", "probability"])
def test_matches_torch_cross_entropy_on_logits(hidden, target):
    F = torch.nn.functional
    rng = np.random.default_rng(zlib.crc32(repr((hidden, target)).encode()))  # stable across runs
    for trial in range(4):
        widths = [int(n) for n in rng.integers(1, 6, size=int(rng.integers(2, 5)))] + [int(rng.integers(2, 7))]
        net = net_of(widths, hidden)
        B = 12
        p = sample(net, B, seed=int(rng.integers(1 << 30)))
        scale = [0.5, 1.0, 4.0, 20.0][trial]
        for l in range(1, net.depth + 1):
            p["W%d" % l] = p["W%d" % l] * scale
        n = widths[-1]
        p["y"] = np.eye(n)[rng.integers(0, n, size=B)] if target == "one_hot" else rng.dirichlet(np.ones(n), size=B)
        p["y"] = p["y"] / np.sum(p["y"], axis=-1, keepdims=True) if target == "probability" else p["y"]
        res = backprop(net, p)
        leaves = {k: torch.tensor(p[k], requires_grad=True) for k in net.parameters}
        a = torch.tensor(p["a0"])
        tf = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu,
              "softplus": lambda x: F.softplus(x, beta=1.0, threshold=50.0), "identity": lambda x: x}[hidden]
        # threshold 50: above it softplus(x) = x and σ(x) = 1 in float64 (e^{−50} < u); at 1000 torch overflows e^x past 709
        for l in range(1, net.depth + 1):
            z = (leaves["W%d" % l] @ a[..., None])[..., 0] + leaves["b%d" % l]
            a = tf(z) if l < net.depth else z
        t = torch.tensor(p["y"]) if target == "probability" else torch.tensor(np.argmax(p["y"], axis=-1))
        loss = F.cross_entropy(z, t, reduction="none")
        loss.sum().backward()
        tol = _tolerance(net, p, False)
        ttol = _tolerance(net, p, True)
        assert_within(res.loss, loss.detach().numpy(), tol["loss"] + ttol["loss"], "loss")
        for k in net.parameters:
            assert_within(res.grads[k], leaves[k].grad.numpy(), tol[k] + ttol[k], k)
        for k in ("b1", "W%d" % net.depth):
            assert_within(evaluate_gradient(net.gradient(k), p), leaves[k].grad.numpy(), tol[k] + ttol[k], k)


def test_both_cancellations_against_torch_sigmoid_cross_entropy_and_softmax_log_likelihood():
    """The two cases where the output φ' cancels: σ + binary cross-entropy (δ^L = σ(z) − y,
    torch's binary_cross_entropy_with_logits) and softmax + log-likelihood (δ^L = softmax(z) − y,
    torch's cross_entropy): dC/dz^L from autograd is a − y in both."""
    F = torch.nn.functional
    rng = np.random.default_rng(11)
    z = rng.normal(size=(8, 4)) * 6
    y = rng.dirichlet(np.ones(4), size=8)
    zt = torch.tensor(z, requires_grad=True)
    F.cross_entropy(zt, torch.tensor(y), reduction="sum").backward()
    d = SM.minus_target(z, y)[0]
    assert_within(d, zt.grad.numpy(), 16 * U * (np.abs(d) + y + 1e-300), "softmax")
    yb = rng.uniform(size=(8, 4))
    zt = torch.tensor(z, requires_grad=True)
    F.binary_cross_entropy_with_logits(zt, torch.tensor(yb), reduction="sum").backward()
    net = symgrad.network([4, 4], "sigmoid", "cross_entropy")
    p = {"a0": z, "y": yb, "W1": np.eye(4), "b1": np.zeros(4)}
    g = backprop(net, p).grads["b1"]
    assert_within(g, zt.grad.numpy(), 16 * U * (np.abs(g) + yb + 1e-300), "sigmoid")


# --- LaTeX ----------------------------------------------------------------------------------------


def test_latex_derivation_states_the_cancellation_and_compiles(tmp_path):
    from symgrad.render import latex as sl

    tex = sl.derivation(net_of([2, 3, 2]).gradient("W1"))
    assert r"\operatorname{diag}(a^{2}) - a^{2} (a^{2})^{\mathsf{T}}" in tex
    assert r"= a^{2} - y" in tex and r"\sum_{i} y_{i} = 1" in tex and r"-\sum_{i} y_{i} \ln a^{2}_{i}" in tex
    assert r"\lVert a^{1} - y \rVert \le \sqrt{2}" in sl.derivation(symgrad.network([2, 3], "softmax", "log_likelihood").gradient("b1"))
    from .test_latex import compile_clean

    gs = [net_of(w, h).gradient(n) for w, h in (([2, 3], "tanh"), ([2, 3, 2], "relu"), ([1, 2, 2, 3], "sigmoid"))
          for n in ("W1", "b1", "a0", "W%d[0,1]" % (len(w) - 1))]
    compile_clean(tmp_path, sl.document(gs, title="softmax"))
