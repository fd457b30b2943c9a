"""Shared-weight dense backprop (symgrad.numeric.shared) against symgrad's per-sample backprop and
PyTorch autograd, and the Monte-Carlo check of mean field (symgrad.theory.montecarlo) with its
assertion (symgrad.testing.typical): passes where mean field holds, fails when the prediction is
perturbed by a few percent."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import symgrad
from symgrad.errors import GradientCheckError, InvalidArgument
from symgrad.numeric.shared import SharedBackprop, backprop_shared, gamma
from symgrad.theory import montecarlo as mc
from symgrad.testing.typical import assert_meanfield

ACTS = ["sigmoid", "tanh", "relu", "gelu"]
LOSSES = ["quadratic", "cross_entropy"]


def _net(act, loss, widths=(4, 6, 5, 3)):
    acts = [act] * (len(widths) - 2) + ["sigmoid" if loss == "cross_entropy" else act]
    return symgrad.network(list(widths), acts, loss)


def _params(net, B, seed):
    rng = np.random.default_rng(seed)
    n = net.widths
    p = {"a0": rng.standard_normal((B, n[0])), "y": rng.uniform(0.05, 0.95, (B, n[-1]))}
    for l in range(1, len(n)):
        p["W%d" % l] = rng.standard_normal((n[l], n[l - 1])) / np.sqrt(n[l - 1]) * 1.5
        p["b%d" % l] = rng.standard_normal(n[l]) * 0.3
    return p


def _abs_chain(net, p):
    """Per layer l: Σ_batch |δ^l|ᵀ|a^{l−1}| and Σ_batch |δ^l| with |δ| carried by |W| and |φ'|:
    the magnitudes that bound the rounding error of any summation order (Higham §3.5)."""
    L = net.depth
    a, zs, As = p["a0"], [None], [p["a0"]]
    for l, act in enumerate(net.activations, start=1):
        z = a @ p["W%d" % l].T + p["b%d" % l]
        a = act.value(z)
        zs.append(z)
        As.append(a)
    out = net.activations[-1]
    if net.loss.cancels_with(out):
        d = np.abs(As[L] - p["y"]) + np.abs(p["y"])  # σ(z) − y from the logit, each term bounded
    elif net.loss.domain_open_unit:
        d = np.abs(out.grad(zs[L]) * (As[L] + p["y"]) / (As[L] * (1 - As[L])))
    else:
        d = np.abs(out.grad(zs[L])) * (np.abs(As[L]) + np.abs(p["y"]))
    gw, gb = {}, {}
    for l in range(L, 0, -1):
        gw[l] = d.T @ np.abs(As[l - 1])
        gb[l] = d.sum(axis=0)
        if l > 1:
            d = (d @ np.abs(p["W%d" % l])) * np.abs(net.activations[l - 2].grad(zs[l - 1]))
    return gw, gb


def _summation_length(net, B, l):
    """Terms summed on the way to ∂C/∂W^l: δ^L (a few operations), each δ^k = (δ^{k+1} W^{k+1}) ⊙ φ'
    (n_{k+1} terms and one product), and the batch sum (B terms)."""
    n = net.widths
    return 4 + sum(n[k] + 1 for k in range(l + 1, net.depth + 1)) + B


# ---------------------------------------------------------------------------------------------
# backprop_shared: exact against the per-sample evaluator and PyTorch
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("act", ACTS)
def test_shared_equals_per_sample_backprop_summed(act, loss):
    net = _net(act, loss)
    B = 9
    p = _params(net, B, seed=ACTS.index(act) * 7 + LOSSES.index(loss))
    res = backprop_shared(net, p)
    per = symgrad.backprop(net, p)
    gw, gb = _abs_chain(net, p)
    # Both evaluate the same forward pass (z^l = a^{l−1} W^lᵀ + b^l, the same kernels); they sum
    # in different orders (a GEMM over the batch vs per-sample products summed by np.sum), so
    # each is within γ_K·Σ|terms| of the exact value and they differ by at most twice that.
    for l in range(1, net.depth + 1):
        K = _summation_length(net, B, l)
        for name, bound in (("W%d" % l, gw[l]), ("b%d" % l, gb[l])):
            mine, theirs = res.grads[name], per.grads[name].sum(axis=0)
            assert mine.shape == net.shape(name)
            tol = 2 * gamma(K) * bound
            assert np.all(np.abs(mine - theirs) <= tol), (name, np.max(np.abs(mine - theirs) - tol))
    # ‖δ^l‖² per sample and the per-sample cost agree too.
    for l in range(1, net.depth + 1):
        d = per.deltas[l - 1]
        np.testing.assert_allclose(res.delta_sq[:, l - 1], np.sum(d * d, axis=1), rtol=4 * gamma(2 * sum(net.widths) + B), atol=0)
    np.testing.assert_allclose(res.cost, per.loss, rtol=gamma(net.widths[-1] + 8), atol=0)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("act", ACTS)
def test_shared_agrees_with_torch_autograd(act, loss):
    torch = pytest.importorskip("torch")
    net = _net(act, loss, widths=(5, 7, 6, 4))
    B = 6
    p = _params(net, B, seed=100 + ACTS.index(act) * 7 + LOSSES.index(loss))
    res = backprop_shared(net, p)
    fns = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu, "gelu": torch.nn.functional.gelu}
    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=k[0] in "Wb") for k, v in p.items()}
    a = t["a0"]
    for l, act_l in enumerate(net.activations, start=1):
        z = a @ t["W%d" % l].T + t["b%d" % l]
        a = fns[act_l.name](z) if l < net.depth or loss == "quadratic" else z
    if loss == "quadratic":
        cost = 0.5 * ((a - t["y"]) ** 2).sum()
    else:
        cost = torch.nn.functional.binary_cross_entropy_with_logits(a, t["y"], reduction="sum")
    cost.backward()
    gw, gb = _abs_chain(net, p)
    # Torch's kernels and GEMM orders differ from NumPy's: each side is within γ_K of the exact
    # gradient on the absolute chain, with every activation kernel's few ulps (φ and φ') and the
    # forward pass's perturbation of φ'(z) counted as 8 more terms per layer.
    for l in range(1, net.depth + 1):
        K = _summation_length(net, B, l) + 8 * net.depth + sum(net.widths)
        for name, bound in (("W%d" % l, gw[l]), ("b%d" % l, gb[l])):
            diff = np.abs(res.grads[name] - t[name].grad.numpy())
            assert np.all(diff <= 2 * gamma(K) * bound), (name, diff.max())


def test_shared_never_materialises_per_sample_weight_gradients():
    n, B, L = 300, 64, 3
    net = symgrad.network([n] * (L + 1), "tanh")
    p = _params(net, B, seed=1)
    backprop_shared(net, p)  # warm imports and caches
    tracemalloc.start()
    res = backprop_shared(net, p)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert isinstance(res, SharedBackprop) and res.grads["W2"].shape == (n, n)
    # B × n × n float64 is 46 MB; the pass holds z, a (B × n per layer) and the gradients.
    assert peak < 8 * (L * n * n + 4 * L * B * n) * 1.5 < B * n * n * 8 / 4, peak


def test_shared_delta_out_and_float32():
    net = symgrad.network([3, 4, 2], "tanh")
    p = _params(net, 5, seed=2)
    d = np.random.default_rng(3).standard_normal((5, 2))
    res = backprop_shared(net, {k: v for k, v in p.items() if k != "y"}, delta_out=d)
    assert res.cost is None
    np.testing.assert_array_equal(res.delta_sq[:, -1], np.sum(d * d, axis=1))
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    r32 = backprop_shared(net, p32)
    assert r32.grads["W1"].dtype == np.float32 and r32.q.dtype == np.float32


@pytest.mark.parametrize("change, match", [
    (lambda p: p.update(W1=np.stack([p["W1"]] * 5)), r"'W1' has shape \(5, 4, 3\); expected \(4, 3\) \(the weights are shared"),
    (lambda p: p.update(a0=p["a0"][0]), r"'a0' has shape \(3,\); expected \(batch, 3\)"),
    (lambda p: p.update(y=p["y"][:2]), r"'y' has batch size 2 but a0 has 5"),
    (lambda p: p.update(W2=p["W2"].astype(int)), r"'W2' has dtype int64"),
    (lambda p: p["b1"].__setitem__(2, np.nan), r"'b1' .* contains nan at index \(2,\)"),
    (lambda p: p.pop("b2"), r"missing parameter 'b2': expected a float array of shape \(2,\)"),
    (lambda p: p.update(W9=np.zeros(1)), r"unknown parameter 'W9'"),
])
def test_shared_bad_input(change, match):
    net = symgrad.network([3, 4, 2], "tanh")
    p = _params(net, 5, seed=4)
    change(p)
    with pytest.raises(InvalidArgument, match=match):
        backprop_shared(net, p)


def test_shared_non_finite_weights_found_by_the_pass():
    # The weights are not scanned before the pass (module docstring): a nan or ±inf in any W^l
    # is still named with its index, also behind a column of a^{l−1} that is zero for the whole
    # batch (where a BLAS that skips zero operands would not carry it into z^l).
    net = symgrad.network([3, 4, 5, 2], "relu")
    for name, idx, bad in (("W1", (2, 1), np.nan), ("W2", (1, 3), np.inf), ("W3", (1, 4), -np.inf)):
        p = _params(net, 5, seed=6)
        p[name][idx] = bad
        with pytest.raises(InvalidArgument, match=r"'%s' \(expected shape \(\d, \d\)\) contains %s at index \(%d, %d\)"
                           % (name, {np.nan: "nan", np.inf: "inf", -np.inf: "-inf"}[bad], *idx)):
            backprop_shared(net, p)
    p = _params(net, 5, seed=7)
    p["a0"][:, 1] = 0.0  # a0's column 1 is dead: W1[:, 1] never meets a nonzero
    p["W1"][3, 1] = np.nan
    with pytest.raises(InvalidArgument, match=r"'W1' .* contains nan at index \(3, 1\)"):
        backprop_shared(net, p)
    with pytest.raises(InvalidArgument, match=r"'W1' .* contains nan at index \(3, 1\)"):
        from symgrad.numeric.shared import _check_dead_columns
        _check_dead_columns(p["a0"], p["W1"], 1)
    p["W1"][3, 1] = 1.0
    _check_dead_columns(p["a0"], p["W1"], 1)  # a dead column of finite weights is fine


def test_shared_gradient_overflow_is_reported():
    # ‖δ‖² = 4e300 and the forward pass stay finite, but δᵀa0 = 1e150 · 1e200 does not.
    net = symgrad.network([2, 2], "identity")
    p = {"a0": np.full((4, 2), 1e200), "W1": np.eye(2), "b1": np.zeros(2)}
    with pytest.raises(InvalidArgument, match="a batch-summed gradient overflows float64 at layer 1"):
        backprop_shared(net, p, delta_out=np.full((4, 2), 1e150))
    r = backprop_shared(net, p, delta_out=np.full((4, 2), 1e150), grads=False)
    assert np.all(np.isfinite(r.delta_sq))


def test_shared_bad_network_and_delta_out():
    with pytest.raises(InvalidArgument, match="dense network"):
        backprop_shared(symgrad.chain(3), {})
    net = symgrad.network([3, 4, 2], "tanh")
    p = _params(net, 5, seed=5)
    with pytest.raises(InvalidArgument, match=r"delta_out has shape \(5, 3\); expected \(batch, nL\) = \(5, 2\)"):
        backprop_shared(net, p, delta_out=np.zeros((5, 3)))
    p["W1"] = p["W1"] * 1e306
    p["a0"] = p["a0"] * 1e10
    with pytest.raises(InvalidArgument, match="overflows float64 at layer 1"):
        backprop_shared(net, p)


# ---------------------------------------------------------------------------------------------
# The Monte-Carlo check
# ---------------------------------------------------------------------------------------------

POINTS = [("relu", 2, 0), ("tanh", 1, 0), ("tanh", 0.5, 0), ("tanh", 2.5, 0)]
#: The size of the coverage and perturbation tests.  The finite-width allowances and the spread
#: of one network's log q^l and log E‖δ^l‖² grow like depth/width (module docstring of
#: symgrad.theory.montecarlo), and 32/256 = 0.125 is the issue's 50/500 = 0.1 within 25%: the same
#: regime, for a sixth of the normal draws.
SMALL = dict(width=256, depth=32, batch=16)
#: The issue's own size (width 500, depth 50), at ReLU (the largest fourth moment, v = 5, so the
#: largest spread and forward allowance).
STANDARD_POINTS = [("relu", 2, 0)]
UNIT = 2.0 ** -53


@pytest.fixture(scope="module")
def checks():
    return {pt: mc.check_wide_network(*pt, **SMALL, seed=0) for pt in POINTS}


@pytest.mark.parametrize("pt", POINTS)
def test_mean_field_holds(checks, pt):
    c = checks[pt]
    assert (c.width, c.depth, c.batch) == (256, 32, 16)
    assert c.ok, c.summary()
    assert c.q_measured.shape == c.q_predicted.shape == c.ci_low.shape == c.ci_high.shape == (32,)
    assert c.q_samples.shape == c.grad_samples.shape == (c.repeats, 32)
    assert c.grad_ratio_measured[-1] == c.grad_ratio_predicted[-1] == 1.0
    assert np.all(c.ci_low <= c.grad_ratio_measured) and np.all(c.grad_ratio_measured <= c.ci_high)
    assert "ok" in c.summary()


@pytest.mark.parametrize("pt", STANDARD_POINTS)
def test_mean_field_holds_at_width_500_depth_50(pt):
    c = mc.check_wide_network(*pt, width=500, depth=50, batch=16, seed=0)
    assert c.ok, c.summary()
    assert c.grad_ratio_measured[-1] == c.grad_ratio_predicted[-1] == 1.0


@pytest.mark.parametrize("pt", POINTS)
@pytest.mark.parametrize("factor", [1.03, 1 / 1.03])
def test_perturbed_chi1_fails(checks, pt, factor):
    # χ₁ off by 3% accumulates to 1.03^31 ≈ e^0.92 over 32 layers.
    c = checks[pt]
    L = c.depth
    bad = c.against(grad_ratio_predicted=c.grad_ratio_predicted * factor ** (L - np.arange(1, L + 1)))
    assert not bad.ok
    assert bad.worst[0] == "grad ratio"


@pytest.mark.parametrize("pt", POINTS)
@pytest.mark.parametrize("factor", [1.05, 1 / 1.05])
def test_perturbed_q_fails(checks, pt, factor):
    c = checks[pt]
    bad = c.against(q_predicted=c.q_predicted * factor)
    assert not bad.ok and bad.worst[0] == "q"


def _derived_half_widths(c):
    """The intervals' half-widths (log space) recomputed from the per-network samples by the
    module docstring's derivation: Student's t with R − 1 degrees of freedom at the Bonferroni
    level 1 − (1 − level)/(2L) (two-sided), times the delta-method standard errors, plus the
    finite-width allowances."""
    from scipy.stats import t

    R, L = c.repeats, c.depth
    tq = t.ppf(1 - (1 - c.level) / (2 * L) / 2, R - 1)
    qs, A = c.q_samples, c.grad_samples
    qm = qs.mean(axis=0)
    hq = tq * np.std(qs / qm, axis=0, ddof=1) / np.sqrt(R) + c.q_finite_width
    Abar = A.mean(axis=0)
    rel = A / Abar - (A[:, -1] / Abar[-1])[:, None]
    hg = tq * np.std(rel, axis=0, ddof=1) / np.sqrt(R) + c.grad_finite_width
    return qm, Abar / Abar[-1], hq, hg


@pytest.mark.parametrize("pt", POINTS)
def test_intervals_are_the_derived_ones(checks, pt):
    # A wider interval (say 1.5×, or a t quantile without Bonferroni's 2L) passes everything a
    # correct one passes: only recomputing it shows.  The bounds are estimate·e^{±h}: forming
    # them and taking log(bound/estimate) back costs four roundings (product, exp, quotient, log),
    # within 8u·(1 + h) absolutely.
    c = checks[pt]
    qm, gm, hq, hg = _derived_half_widths(c)
    np.testing.assert_allclose(c.q_measured, qm, rtol=4 * gamma(c.repeats), atol=0)
    np.testing.assert_allclose(c.grad_ratio_measured, gm, rtol=8 * gamma(c.repeats), atol=0)
    for lo, hi, est, h in ((c.q_ci_low, c.q_ci_high, c.q_measured, hq), (c.ci_low, c.ci_high, c.grad_ratio_measured, hg)):
        tol = 8 * UNIT * (1 + h) + 4 * gamma(c.repeats) * h  # and the estimate's own rounding in h
        assert np.all(np.abs(np.log(hi / est) - h) <= tol), np.max(np.abs(np.log(hi / est) - h) - tol)
        assert np.all(np.abs(np.log(est / lo) - h) <= tol), np.max(np.abs(np.log(est / lo) - h) - tol)


@pytest.mark.parametrize("pt", POINTS)
def test_a_prediction_just_outside_the_interval_fails(checks, pt):
    # Placed at estimate·e^{±0.99 h} every prediction passes, at e^{±1.01 h} every layer fails
    # (h from the derivation above; the layer-L ratio, exactly 1 with h = 0, left as it is).
    c = checks[pt]
    _, _, hq, hg = _derived_half_widths(c)
    for sign in (1, -1):
        assert c.against(q_predicted=c.q_measured * np.exp(sign * 0.99 * hq),
                         grad_ratio_predicted=c.grad_ratio_measured * np.exp(sign * 0.99 * hg)).ok
        for k in range(c.depth):
            q = c.q_measured.copy()
            q[k] *= np.exp(sign * 1.01 * hq[k])
            assert not c.against(q_predicted=q).ok
        for k in range(c.depth - 1):
            g = c.grad_ratio_predicted.copy()
            g[k] = c.grad_ratio_measured[k] * np.exp(sign * 1.01 * hg[k])
            bad = c.against(grad_ratio_predicted=g)
            assert not bad.ok and bad.worst[:2] == ("grad ratio", k + 1)


@pytest.mark.parametrize("pt", POINTS)
def test_intervals_include_the_finite_width_term(checks, pt):
    # Dropping the finite-width allowance must show: it is at least (L − l)/n for the ratio (the
    # gradient-independence term) and the interval contains it.
    c = checks[pt]
    L, n = c.depth, c.width
    assert np.all(c.grad_finite_width >= (L - np.arange(1, L + 1)) / n * (1 - 1e-12))
    assert np.all(np.log(c.ci_high / c.grad_ratio_measured) >= c.grad_finite_width * (1 - 1e-12))
    assert np.all(np.log(c.q_ci_high / c.q_measured) >= c.q_finite_width * (1 - 1e-12))


def test_relu_allowances_are_exactly_the_derived_ones(checks):
    # ReLU: P(q) = E[H(√q Z)²] = 1/2 and M(q) = q/2 for every q > 0, so the Jensen terms vanish
    # (P'' = M'' = 0) and the ratio's allowance is the gradient-independence term alone,
    # Σ_{k=l}^{L−1} 1/n = (L − l)/n (a sum of L − l equal terms: within γ_L), and q's is 0 up to the
    # central differences' rounding: the quadrature's relative error (below 1e-13) times 4/h² with
    # h = 1/64, times the accumulated V ≤ L·v/n.
    c = checks[("relu", 2, 0)]
    L, n = c.depth, c.width
    np.testing.assert_allclose(c.grad_finite_width, (L - np.arange(1, L + 1)) / n, rtol=gamma(L), atol=0)
    assert np.all(np.abs(c.q_finite_width) <= 1e-13 * 4 * 64 ** 2 * L * 5 / n)


@pytest.mark.parametrize("pt", POINTS[1:])
def test_tanh_allowances_are_the_derived_sums(checks, pt):
    # The module docstring's allowances written out directly (0-based k = layer k + 1), against
    # the recursions of _finite_width: V_{k+1} = λ_k² V_k + η_k² (the relative variance of s²_{k+1}),
    # q's allowance Σ_{j<k} (Π_{j<i<k} λ_i)·½|q²M''/q^{j+1}|σ_w²·V_j, and the ratio's
    # Σ_{k=l}^{L−1} (½|q²P''/P|_k V_k + 1/n) + ½|Σ_{j,k} e_j e_k Cov(ε_j, ε_k)| with
    # Cov(ε_j, ε_k) = V_j Π_{i=j}^{k−1} λ_i (j ≤ k): the lognormal correction ½Var of a sum of
    # correlated log-factors.  Both sides add the same nonnegative terms in other orders: γ_{L²}.
    c = checks[pt]
    L, n, w2 = c.depth, c.width, c.sigma_w2
    mo = mc._moments(symgrad.activation("tanh"), c.q_predicted)
    nxt = np.append(c.q_predicted[1:], c.q_predicted[-1])
    lam = np.abs(w2 * mo["qM1"] / nxt)
    eta2 = np.square(w2 * mo["M"] / nxt) * mo["v"] / n
    jq = 0.5 * w2 * np.abs(mo["q2M2"]) / nxt
    V = np.zeros(L)
    for k in range(L - 1):
        V[k + 1] = lam[k] ** 2 * V[k] + eta2[k]
    fq = np.array([sum(np.prod(lam[j + 1:k]) * jq[j] * V[j] for j in range(k)) for k in range(L)])
    e = mo["eP"]
    cov = lambda j, k: V[j] * np.prod(lam[j:k])  # noqa: E731
    fg = np.array([sum(0.5 * abs(mo["cP"][k]) * V[k] + 1.0 / n for k in range(l, L - 1))
                   + 0.5 * abs(sum(e[j] * e[k] * cov(min(j, k), max(j, k)) for j in range(l, L - 1) for k in range(l, L - 1)))
                   for l in range(L)])
    tol = 4 * gamma(L * L)
    np.testing.assert_allclose(c.q_finite_width, fq, rtol=tol, atol=0)
    np.testing.assert_allclose(c.grad_finite_width, fg, rtol=tol, atol=0)


def test_predicted_q_follows_the_length_map_and_chi1():
    c = mc.check_wide_network("tanh", 1.5, 0.2, width=64, depth=6, batch=4, repeats=3)
    q = 1.5 * 1.0 + 0.2
    for l in range(6):
        assert c.q_predicted[l] == pytest.approx(q, rel=1e-12)
        q = float(symgrad.meanfield.length_map("tanh", 1.5, 0.2, q))
    # Near q* the per-layer factor is χ₁.
    deep = mc.check_wide_network("relu", 1.5, 0.5, width=64, depth=30, batch=4, repeats=3)
    chi = float(symgrad.meanfield.chi1("relu", 1.5, 0.5))
    assert deep.grad_ratio_predicted[-2] == pytest.approx(chi, rel=1e-12)
    assert deep.grad_ratio_predicted[0] == pytest.approx(chi ** 29, rel=1e-10)


def test_assert_meanfield_passes_and_reports_the_worst_layer(monkeypatch):
    c = assert_meanfield("relu", 2, 0, width=200, depth=10, batch=16)
    assert c.ok
    real = mc._predict
    monkeypatch.setattr(mc, "_predict", lambda *a: real(*a) * 1.3)
    with pytest.raises(GradientCheckError, match=r"worst is q at layer \d+ of 10: measured .* predicted .* interval \["):
        assert_meanfield("relu", 2, 0, width=200, depth=10, batch=16)


@pytest.mark.parametrize("kw, match", [
    (dict(width=1), r"width=1 must be an int ≥ 2"),
    (dict(depth=2.0), r"depth=2.0 must be an int ≥ 1"),
    (dict(repeats=2), r"repeats=2 must be an int ≥ 3"),
    (dict(level=1.0), r"level=1.0 must be a probability"),
    (dict(seed=-1), r"seed=-1"),
    (dict(q0=0.0), r"q0=0.0 must be a finite number above 0"),
])
def test_check_bad_arguments(kw, match):
    with pytest.raises(InvalidArgument, match=match):
        mc.check_wide_network("relu", 2, 0, **{**dict(width=16, depth=3, batch=2), **kw})


def test_check_bad_variances():
    with pytest.raises(InvalidArgument, match="sigma_w2"):
        mc.check_wide_network("relu", -1, 0, width=16, depth=3, batch=2)
    with pytest.raises(InvalidArgument, match="no finite fixed point|leaves float64|moments"):
        mc.check_wide_network("relu", 1000, 0, width=16, depth=400, batch=2)
    c = mc.check_wide_network("tanh", 1, 0, width=16, depth=3, batch=2, repeats=3)
    with pytest.raises(InvalidArgument, match=r"q_predicted has shape \(2,\); expected \(depth,\) = \(3,\)"):
        c.against(q_predicted=np.ones(2))
