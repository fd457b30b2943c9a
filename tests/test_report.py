"""The gradient-flow report: every column against an independent computation, the worst-case bound
as a property, the mean-field column against mpmath and against a wide random network, the verdict
criteria, deep networks without overflow, bad input, and the JSON and LaTeX forms."""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import symgrad
from symgrad.diagnosis import report
from symgrad.diagnosis.report import VERDICTS
from symgrad.errors import InvalidArgument
from symgrad.render.report import report_latex

U = 2.0 ** -53


def _params(widths, rng, scale=1.0, bias=0.0):
    p = {"W%d" % l: rng.normal(0, scale / math.sqrt(n), (m, n)) for l, (n, m) in enumerate(zip(widths, widths[1:]), 1)}
    p.update({"b%d" % l: np.full(m, bias) for l, m in enumerate(widths[1:], 1)})
    return p


def test_measured_columns_equal_per_sample_backprop_averaged():
    # The per-sample evaluator (symgrad.backprop, one network per batch index) is a different code
    # path from the shared-weight pass the report uses; the batch mean of its gradients is ∂C/∂p.
    rng = np.random.default_rng(1)
    net = symgrad.network([3, 5, 4, 2], ["tanh", "softplus", "sigmoid"])
    p = _params(net.widths, rng, 1.5, 0.1)
    x, y = rng.normal(size=(7, 3)), rng.uniform(size=(7, 2))
    r = report(net, p, inputs=x, targets=y)
    per = symgrad.backprop(net, {**p, "a0": x, "y": y})
    for l, row in enumerate(r.layers, 1):
        gb = per.grads["b%d" % l].mean(axis=0)
        gW = per.grads["W%d" % l].mean(axis=0)
        # Each norm is a sum of ≤ 20 squares of values with relative error ≤ ~50u (depth 3): 1e-12 is wide.
        assert row.grad_b == pytest.approx(np.linalg.norm(gb), rel=1e-12)
        assert row.grad_W == pytest.approx(np.linalg.norm(gW), rel=1e-12)
        ratio = np.linalg.norm(gb) / np.linalg.norm(per.grads["b3"].mean(axis=0))
        assert 10 ** row.log10_ratio == pytest.approx(ratio, rel=1e-12)
        d = [np.sum(np.square(dl), axis=1).mean() for dl in per.deltas]
        assert 10 ** row.log10_rms_ratio == pytest.approx(math.sqrt(d[l - 1] / d[-1]), rel=1e-12)
        z = symgrad.forward(net, {**p, "a0": x, "y": y})["z%d" % l]
        assert row.q == pytest.approx(np.mean(z ** 2), rel=1e-12)
        assert row.sigma_w2 == pytest.approx(net.widths[l - 1] * np.mean(p["W%d" % l] ** 2), rel=1e-14)
        assert row.weight_norm == pytest.approx(np.linalg.svd(p["W%d" % l], compute_uv=False)[0], rel=1e-12)
    assert r.cost == pytest.approx(float(np.mean(per.loss)), rel=1e-12)
    assert r.dominant_layer == 1 + int(np.argmax([row.grad_W for row in r.layers]))


ACTS = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu", "gelu", "softsign", "identity"]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.lists(st.integers(1, 6), min_size=2, max_size=6),
       st.lists(st.sampled_from(ACTS), min_size=5, max_size=5), st.floats(0.1, 4.0))
def test_the_measured_rms_ratio_never_exceeds_the_worst_case_bound(seed, widths, acts, scale):
    # ρ_l ≤ B_l holds for every input exactly (‖Σ'(z)‖₂ ≤ sup|φ'|); the computed values carry
    # rounding of relative size ≤ c·(L·n)·u on each side, far below the slack used here.
    rng = np.random.default_rng(seed)
    L = len(widths) - 1
    net = symgrad.network(widths, acts[:L])
    p = _params(widths, rng, scale, 0.3)
    r = report(net, p, inputs=rng.normal(size=(5, widths[0])), targets=rng.normal(size=(5, widths[-1])))
    slack = math.log10(1 + 256 * L * max(widths) * U)
    for row in r.layers:
        if row.log10_rms_ratio is not None and row.log10_worst_case is not None:
            assert row.log10_rms_ratio <= row.log10_worst_case + slack


def test_a_too_small_worst_case_bound_is_caught_by_the_property():
    # The mutation the property exists for: drop sup|φ'| from B_l (sigmoid, sup 1/4) and ρ_l
    # exceeds the "bound" somewhere in the same draws.
    rng = np.random.default_rng(3)
    net = symgrad.network([4, 4, 4, 4, 1], "tanh")
    p = _params(net.widths, rng, 3.0)
    r = report(net, p, inputs=rng.normal(size=(32, 4)) * 0.01, targets=rng.normal(size=(32, 1)))
    # With tiny inputs tanh' ≈ 1 = sup, so the bound is nearly attained: B_1/ρ_1 is within 10×, and a
    # bound a factor 4 smaller per layer (sigmoid's sup, wrongly used) would fail.
    row = r.layers[0]
    assert row.log10_rms_ratio <= row.log10_worst_case
    assert row.log10_rms_ratio > row.log10_worst_case - 3 * math.log10(4)


def test_worst_case_column_equals_its_definition():
    # B_l = Π_{k=l}^{L−1} sup|φ_k'| ‖W^{k+1}‖₂, with layer k's own sup (sigmoid 1/4, tanh 1, GELU's
    # 1.1289), recomputed here from SVDs.
    rng = np.random.default_rng(13)
    acts = ["sigmoid", "tanh", "gelu", "relu", "identity"]
    net = symgrad.network([3, 4, 5, 4, 3, 2], acts)
    p = _params(net.widths, rng, 1.7)
    r = report(net, p, inputs=rng.normal(size=(6, 3)), targets=rng.normal(size=(6, 2)))
    sup = [float(symgrad.activation(a).bound.sup) for a in acts]
    assert sup[0] == 0.25 and 1.12 < sup[2] < 1.13
    norms = [np.linalg.svd(p["W%d" % l], compute_uv=False)[0] for l in range(1, 6)]
    for l in range(1, 6):
        B = math.prod(sup[k - 1] * norms[k] for k in range(l, 5))
        assert 10 ** r.layers[l - 1].log10_worst_case == pytest.approx(B, rel=1e-12)


def _mp_chi(act, w2, q):
    f = lambda z: act_grad_mp(act, mpmath.sqrt(q) * z) ** 2 * mpmath.exp(-z * z / 2) / mpmath.sqrt(2 * mpmath.pi)
    return w2 * mpmath.quad(f, [-mpmath.inf, 0, mpmath.inf])


def act_grad_mp(name, x):
    if name == "tanh":
        return mpmath.sech(x) ** 2
    s = 1 / (1 + mpmath.exp(-x))
    return s * (1 - s)


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_mean_field_column_equals_an_mpmath_recursion(name):
    # The prediction from the report's own empirical variances, recomputed with mpmath quadrature.
    mpmath.mp.dps = 20
    rng = np.random.default_rng(4)
    net = symgrad.network([6, 6, 6, 6, 1], name)
    p = _params(net.widths, rng, 1.3, 0.2)
    x = rng.normal(size=(16, 6))
    r = report(net, p, inputs=x, targets=rng.uniform(size=(16, 1)))
    phi = (lambda t: mpmath.tanh(t)) if name == "tanh" else (lambda t: 1 / (1 + mpmath.exp(-t)))
    q = r.layers[0].sigma_w2 * mpmath.mpf(float(np.mean(x ** 2))) + r.layers[0].sigma_b2
    lg = 0
    chis = []
    for l in range(len(r.layers) - 1):
        assert r.layers[l].q_predicted == pytest.approx(float(q), rel=1e-9)
        nxt = r.layers[l + 1]
        c = _mp_chi(name, nxt.sigma_w2, q)
        chis.append(c)
        assert r.layers[l].chi == pytest.approx(float(c), rel=1e-9)
        m2 = mpmath.quad(lambda z: phi(mpmath.sqrt(q) * z) ** 2 * mpmath.exp(-z * z / 2) / mpmath.sqrt(2 * mpmath.pi), [-mpmath.inf, 0, mpmath.inf])
        q = nxt.sigma_w2 * m2 + nxt.sigma_b2
    for l in range(len(r.layers) - 1):
        pred = mpmath.sqrt(mpmath.fprod(chis[l:]))
        assert r.layers[l].log10_predicted == pytest.approx(float(mpmath.log10(pred)), abs=1e-9)


def test_mean_field_prediction_matches_a_wide_random_network():
    # tanh in the ordered phase (σ_w² = 0.5): ρ_1 = (Π χ)^{1/2} ≈ 0.2.  Finite width n: per layer
    # ‖W^T δ‖²/(σ_w²‖δ‖²) and the mean of φ'² over n units fluctuate with relative sd ≤ √(2/n)
    # and ≤ 1/√n, so ln ρ_1 has sd ≤ ½·√(3(L−1)/n) = 0.06 at n = 600, L = 4; 5 sd is allowed.
    rng = np.random.default_rng(5)
    n, L = 600, 4
    net = symgrad.network([n] * L + [1], "tanh")
    p = _params(net.widths, rng, math.sqrt(0.5))
    r = report(net, p, inputs=rng.normal(size=(64, n)), targets=rng.normal(size=(64, 1)))
    row = r.layers[0]
    assert row.log10_predicted < math.log10(0.5)
    assert abs(row.log10_rms_ratio - row.log10_predicted) * math.log(10) < 5 * 0.5 * math.sqrt(3 * (L - 1) / n)


def test_verdicts_vanishing_exploding_healthy_and_the_threshold():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(64, 8))
    van = symgrad.network([8] * 6 + [1], "sigmoid")
    pv, yv = _params(van.widths, rng, 1.0), rng.uniform(size=(64, 1))
    r = report(van, pv, inputs=x, targets=yv)
    assert r.verdict == "vanishing" and r.typical_verdict == "vanishing"
    assert any("slower" in s for s in r.reasons)
    # The same network with a threshold beyond its spread is healthy: the criterion is the one stated.
    lo = min(row.log10_ratio for row in r.layers)
    r2 = report(van, pv, inputs=x, targets=yv, threshold=10 ** (-lo) * 2)
    assert r2.verdict == "healthy"
    exp = symgrad.network([8] * 6 + [1], "identity")
    r = report(exp, _params(exp.widths, rng, 2.0), inputs=x, targets=rng.uniform(size=(64, 1)))
    assert r.verdict == "exploding" and r.typical_verdict == "exploding"
    ok = symgrad.network([64] * 4 + [1], "relu")
    r = report(ok, _params(ok.widths, rng, math.sqrt(2)), inputs=rng.normal(size=(64, 64)), targets=rng.uniform(size=(64, 1)))
    assert r.verdict == "healthy"
    assert set(VERDICTS) >= {"healthy", "vanishing", "exploding", "undetermined"}


def test_undetermined_when_the_output_gradient_is_zero():
    rng = np.random.default_rng(7)
    net = symgrad.network([3, 4, 2], "identity")
    p = _params(net.widths, rng)
    x = rng.normal(size=(5, 3))
    y = symgrad.forward(net, {**p, "a0": x, "y": np.zeros((5, 2))})["a2"]
    r = report(net, p, inputs=x, targets=y)
    assert r.verdict == "undetermined" and r.layers[0].log10_ratio is None
    json.loads(r.to_json())


def test_dead_and_saturated_units():
    rng = np.random.default_rng(8)
    net = symgrad.network([5, 10, 10, 1], "relu")
    p = _params(net.widths, rng)
    p["b1"] = np.full(10, -100.0)  # every z^1 < 0: every unit of layer 1 is dead
    r = report(net, p, inputs=rng.normal(size=(20, 5)), targets=rng.uniform(size=(20, 1)))
    assert r.layers[0].dead == 1.0 and r.layers[0].saturated == 0.0
    assert any("dead" in s for s in r.reasons)
    p["b1"] = np.concatenate([[-100.0, -100.0, -100.0], np.full(7, 100.0)])  # 3 of 10 units dead, 7 always active
    r = report(net, p, inputs=rng.normal(size=(20, 5)), targets=rng.uniform(size=(20, 1)))
    assert r.layers[0].dead == pytest.approx(0.3)
    assert not any("dead" in s for s in r.reasons)
    sig = symgrad.network([5, 10, 1], "sigmoid")
    p = _params(sig.widths, rng)
    p["b1"] = np.concatenate([np.full(5, 30.0), np.zeros(5)])  # half the units sit in σ's flat tail
    r = report(sig, p, inputs=rng.normal(size=(20, 5)) * 0.1, targets=rng.uniform(size=(20, 1)))
    assert r.layers[0].saturated == pytest.approx(0.5) and r.layers[0].dead == 0.0


def test_deep_network_carries_magnitudes_in_log_space_without_warnings():
    # Depth 400, sigmoid, small weights: the ratio is ~10^-250 and the bound ~10^-280; nothing is
    # formed that would underflow, and warnings are errors in this suite.
    rng = np.random.default_rng(9)
    net = symgrad.network([2] * 400 + [1], "sigmoid")
    p = _params(net.widths, rng, 0.9)
    r = report(net, p, inputs=rng.normal(size=(4, 2)), targets=rng.uniform(size=(4, 1)))
    row = r.layers[0]
    assert row.log10_worst_case < -150 and row.log10_predicted < -150
    assert r.verdict == "vanishing"
    assert "e-" in str(r).split("\n")[3]  # the first row, after the title, header and rule
    json.loads(r.to_json())


@pytest.mark.parametrize("bad, match", [
    (lambda net, p, x, y: report(symgrad.chain(3), p, inputs=x, targets=y), "dense network"),
    (lambda net, p, x, y: report(net, [1, 2], inputs=x, targets=y), "mapping"),
    (lambda net, p, x, y: report(net, {k: v for k, v in p.items() if k != "W2"}, inputs=x, targets=y), "W2"),
    (lambda net, p, x, y: report(net, {**p, "W1": np.ones((3, 3))}, inputs=x, targets=y), "W1"),
    (lambda net, p, x, y: report(net, {**p, "b1": np.array([0, np.nan, 0, 0.0])}, inputs=x, targets=y), "b1"),
    (lambda net, p, x, y: report(net, p, inputs=x[:, :2], targets=y), "inputs"),
    (lambda net, p, x, y: report(net, p, inputs=x, targets=y[:3]), "batch"),
    (lambda net, p, x, y: report(net, p, inputs=None, targets=y), "inputs"),
    (lambda net, p, x, y: report(net, p, inputs=x, targets=y, threshold=1), "threshold"),
    (lambda net, p, x, y: report(net, p, inputs=x, targets=y, threshold=float("inf")), "threshold"),
    (lambda net, p, x, y: report(net, p, inputs=x, targets=y, saturation=0), "saturation"),
    (lambda net, p, x, y: report(net, p, inputs=np.array([["a"] * 3] * 5), targets=y), "inputs"),
])
def test_bad_input_is_named(bad, match):
    rng = np.random.default_rng(10)
    net = symgrad.network([3, 4, 2], "tanh")
    with pytest.raises(InvalidArgument, match=match):
        bad(net, _params(net.widths, rng), rng.normal(size=(5, 3)), rng.normal(size=(5, 2)))


def test_json_is_strict_and_complete():
    rng = np.random.default_rng(11)
    net = symgrad.network([3, 4, 2], "relu")
    r = report(net, _params(net.widths, rng), inputs=rng.normal(size=(5, 3)), targets=rng.normal(size=(5, 2)))
    d = json.loads(r.to_json())
    assert d["verdict"] == r.verdict and len(d["layers"]) == 2
    assert set(d["layers"][0]) >= {"grad_b", "grad_W", "log10_ratio", "log10_predicted", "log10_worst_case", "dead", "saturated"}


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_compiles(tmp_path):
    rng = np.random.default_rng(12)
    net = symgrad.network([4, 6, 6, 2], ["tanh", "relu", "sigmoid"])
    r = report(net, _params(net.widths, rng), inputs=rng.normal(size=(9, 4)), targets=rng.uniform(size=(9, 2)))
    tex = tmp_path / "r.tex"
    tex.write_text(report_latex(r, title="A & B report"))
    out = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "r.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:]
    assert "Overfull" not in (tmp_path / "r.log").read_text(errors="replace")


def test_a_pytorch_module_is_reported_as_its_network():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).double()
    rng = np.random.default_rng(14)
    x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    r = report(model, inputs=x, targets=y)
    net, params = symgrad.from_torch(model)
    assert r.to_dict() == report(net, params, inputs=x, targets=y).to_dict()
    # ‖∂C/∂W^1‖ against the module's own autograd on the batch-mean quadratic cost.
    loss = 0.5 * ((model(torch.from_numpy(x)) - torch.from_numpy(y)) ** 2).sum(dim=1).mean()
    loss.backward()
    assert r.layers[0].grad_W == pytest.approx(float(model[0].weight.grad.norm()), rel=1e-12)
    with pytest.raises(InvalidArgument, match="drop params"):
        report(model, params, inputs=x, targets=y)
    with pytest.raises(InvalidArgument, match="needs params"):
        report(net, inputs=x, targets=y)


def test_the_digits_example_runs_and_tells_the_two_models_apart(capsys):
    # examples/digits_report.py is the README's real-model report; one epoch keeps it quick, and the
    # verdicts already differ: the sigmoid stack vanishes, the ReLU stack with He init does not.
    pytest.importorskip("sklearn")
    pytest.importorskip("torch")
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parent.parent / "examples" / "digits_report.py"
    spec = importlib.util.spec_from_file_location("digits_report", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--epochs", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sigmoid"]["report"]["verdict"] == "vanishing"
    assert out["relu"]["report"]["verdict"] == "healthy"
    assert out["relu"]["accuracy"] > out["sigmoid"]["accuracy"]


# --- residual networks ---------------------------------------------------------------------------


def test_residual_measured_columns_equal_per_sample_backprop():
    import sympy

    alpha = sympy.Symbol("alpha", real=True)
    rng = np.random.default_rng(15)
    net = symgrad.network([4, 4, 4, 4, 2], ["tanh", "relu", "softplus", "sigmoid"], residual=[None, alpha, 0.5, None])
    p = _params(net.widths, rng, 1.2, 0.1)
    p["alpha"] = 0.7
    x, y = rng.normal(size=(6, 4)), rng.uniform(size=(6, 2))
    r = report(net, p, inputs=x, targets=y)
    per = symgrad.backprop(net, {**p, "a0": x, "y": y})
    d = [np.sum(np.square(dl), axis=1).mean() for dl in per.deltas]
    for l, row in enumerate(r.layers, 1):
        assert row.grad_b == pytest.approx(np.linalg.norm(per.grads["b%d" % l].mean(axis=0)), rel=1e-12)
        assert row.grad_W == pytest.approx(np.linalg.norm(per.grads["W%d" % l].mean(axis=0)), rel=1e-12)
        assert 10 ** row.log10_rms_ratio == pytest.approx(math.sqrt(d[l - 1] / d[-1]), rel=1e-12)
    with pytest.raises(InvalidArgument, match="alpha"):
        report(net, {k: v for k, v in p.items() if k != "alpha"}, inputs=x, targets=y)


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.integers(2, 6), st.integers(1, 5),
       st.lists(st.sampled_from(ACTS), min_size=6, max_size=6),
       st.lists(st.one_of(st.none(), st.floats(-2.0, 2.0)), min_size=6, max_size=6), st.floats(0.1, 3.0))
def test_residual_rms_ratio_never_exceeds_the_worst_case_bound(seed, L, n, acts, alphas, scale):
    # ‖δ^l‖ ≤ |s_l| sup|φ_l'| ‖g^l‖ and ‖g^{l−1}‖ ≤ (1 + |α_l| sup|φ_l'| ‖W_l‖₂) ‖g^l‖ hold exactly for
    # every input; the last layer is plain (a residual output layer has no bound relative to δ^L).
    rng = np.random.default_rng(seed)
    res = alphas[: L - 1] + [None]
    net = symgrad.network([n] * L + [n], acts[:L], residual=res)
    p = _params(net.widths, rng, scale, 0.2)
    r = report(net, p, inputs=rng.normal(size=(5, n)), targets=rng.normal(size=(5, n)))
    slack = math.log10(1 + 256 * L * n * U)
    for row in r.layers:
        if row.log10_rms_ratio is not None and row.log10_worst_case is not None:
            assert row.log10_rms_ratio <= row.log10_worst_case + slack


def test_residual_worst_case_column_equals_its_definition():
    rng = np.random.default_rng(16)
    acts, alphas = ["sigmoid", "tanh", "gelu", "relu"], [None, 0.5, -1.5, None]
    net = symgrad.network([3, 3, 3, 3, 2], acts, residual=alphas)
    p = _params(net.widths, rng, 1.3)
    r = report(net, p, inputs=rng.normal(size=(6, 3)), targets=rng.normal(size=(6, 2)))
    sup = [float(symgrad.activation(a).bound.sup) for a in acts]
    nrm = [np.linalg.svd(p["W%d" % l], compute_uv=False)[0] for l in range(1, 5)]
    g = nrm[3]  # ‖g^3‖ ≤ ‖W^4‖ ‖δ^4‖
    want = {}
    for l in (3, 2, 1):
        s = 1.0 if alphas[l - 1] is None else abs(alphas[l - 1])
        want[l] = s * sup[l - 1] * g
        g *= (1.0 if alphas[l - 1] is not None else 0.0) + s * sup[l - 1] * nrm[l - 1]
    for l in (1, 2, 3):
        assert 10 ** r.layers[l - 1].log10_worst_case == pytest.approx(want[l], rel=1e-12)


@pytest.mark.parametrize("act, alpha, scale", [("tanh", 0.5, 1.0), ("sigmoid", 1.0, 1.5)])
def test_residual_mean_field_prediction_matches_a_wide_random_network(act, alpha, scale):
    # Same finite-width allowance as the plain test (per layer relative sd ≤ √(3/n) in E‖·‖²);
    # leaving out the skip's "1 +" or α² would move ρ_1 by factors of 2 or more here.
    rng = np.random.default_rng(17)
    n, L = 600, 5
    net = symgrad.network([n] * L + [1], act, residual=[None] + [alpha] * (L - 2) + [None])
    p = _params(net.widths, rng, scale, 0.3)
    r = report(net, p, inputs=rng.normal(size=(64, n)), targets=rng.normal(size=(64, 1)))
    tol = 5 * 0.5 * math.sqrt(3 * (L - 1) / n)
    for row in r.layers[:-1]:
        assert abs(row.log10_rms_ratio - row.log10_predicted) * math.log(10) < tol
        assert abs(math.log(row.q / row.q_predicted)) < 2 * tol


def test_a_residual_output_layer_has_no_worst_case_and_says_why():
    rng = np.random.default_rng(18)
    net = symgrad.network([3, 3, 3], "tanh", residual=0.5)
    r = report(net, _params(net.widths, rng), inputs=rng.normal(size=(4, 3)), targets=rng.normal(size=(4, 3)))
    assert r.layers[0].log10_worst_case is None and any("output layer is residual" in s for s in r.notes)
    assert r.layers[0].log10_predicted is not None
