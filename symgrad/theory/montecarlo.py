"""The Monte-Carlo check of mean field: sample wide random dense networks, run symgrad's own
shared-weight backprop (:func:`symgrad.numeric.shared.backprop_shared`) and compare the measured
per-layer ``q^l`` and gradient ratios ``E‖δ^l‖²/E‖δ^L‖²`` with :mod:`symgrad.theory.meanfield`.

**Set-up** (Poole et al. 2016; Schoenholz et al. 2017, "Deep Information Propagation").  Every
layer has ``n = width`` units; ``W^l_ij ~ N(0, σ_w²/n)``, ``b^l_i ~ N(0, σ_b²)``; each input
``x_b`` (a row of ``a0``) is a Gaussian vector rescaled to ``‖x_b‖² = n·q0`` exactly (per-unit
second moment q0).  The gradient is started from a **fixed random readout**: δ^L is drawn
N(0, 1) per sample and unit, independent of the forward pass (the mean-field convention,
Schoenholz et al. §5: the gradient statistics do not depend on the loss), passed as
``delta_out``.

**Prediction.**  ``q^1 = σ_w² q0 + σ_b²`` and ``q^{l+1} = σ_w² M(q^l) + σ_b²`` with
``M(q) = E[φ(√q Z)²]`` (:func:`~symgrad.theory.meanfield.length_map` iterates: the
predicted q^l from q0, not only q*).  Per layer ``E‖δ^l‖² = χ^l E‖δ^{l+1}‖²`` with
``χ^l = σ_w² P(q^l)``, ``P(q) = E[φ'(√q Z)²]`` (Schoenholz et al. eq. 13), so the predicted
ratio is ``Π_{k=l}^{L−1} χ^k``, which is ``χ₁^{L−l}`` once q^l ≈ q*.

**Measurement and its interval** (both in log space, per layer).  ``repeats`` independent
networks (independent W, b, inputs and δ^L) each give ``q_r^l`` (mean of (z^l)² over batch and
units) and ``A_r^l`` (batch mean of ‖δ^l‖²).  The estimates are the pooled means
``q̂^l = mean_r q_r^l`` and ``m̂^l = Σ_r A_r^l / Σ_r A_r^L``.  The weights are shared across
the batch, so the batch does not average the weights' randomness away: only independent
networks do (at width 500 and depth 50 one ReLU network's log q^50 has a spread of ≈ 0.7).

* Sampling error: by the delta method, ``se(log q̂) = sd_r(q_r)/(q̂ √R)`` and
  ``se(log m̂) = sd_r(A_r^l/Ā^l − A_r^L/Ā^L)/√R``, multiplied by Student's t quantile with R − 1
  degrees of freedom at the per-layer level 1 − (1 − ``level``)/(2L) (two-sided), so that by
  Bonferroni the chance that a network which follows mean field fails at any of the 2L
  comparisons is at most 1 − ``level`` (default 1%).
* Finite width (a bias, not a spread; added to the half-width): given layer k − 1, the units'
  ``z^k_i`` are i.i.d. N(0, s_k²) with ``s_k² = σ_w²‖a^{k−1}‖²/n + σ_b²``, so the expectations
  are exact *given* s_k²; the bias comes from s_k² fluctuating around q^k.  One layer adds the
  relative variance ``η_k² = (σ_w² M(q^k)/q^{k+1})²·v_k/n`` with
  ``v_k = Var[φ(√q Z)²]/E[φ(√q Z)²]²`` (5 for ReLU, 2 for a linear unit), and the relative
  variance of s² evolves as ``V_{k+1} = λ_k² V_k + η_k²`` (AR(1) in depth), ``λ_k`` the length
  map's elasticity ``σ_w² q M'(q)/q^{k+1}`` at q^k.  By the second-order delta method a smooth map
  f of s² is biased by ½ f''(q)·Var(s²), i.e. relatively by ``½ |q² f''(q)/f(q)| · V_k``.  With
  f = M for the forward pass, carried forward by λ, q^l's log-space allowance is
  ``Σ_{j<l} (Π_{j<i<l} λ_i)·½σ_w²|q²M''|_j/q^{j+1}·V_j``.  With f = P for the backward factors
  χ^k = σ_w² P(s_k²), the ratio's is ``Σ_{k=l}^{L−1} (½|q²P''/P|_k·V_k + 1/n)`` plus
  ``½|Σ_{j,k=l}^{L−1} e_j e_k Cov(ε_j, ε_k)|`` (the lognormal correction for a product of
  correlated factors; ``e = qP'/P``, ``Cov(ε_j, ε_k) = V_j Π_{i=j}^{k−1} λ_i`` for j ≤ k); the ``1/n`` per layer allows for
  the gradient-independence assumption (δ^{l+1} and W^{l+1} are not independent at finite width;
  the correction is O(1/n) per layer, Yang 2019), which is exact for ReLU-like units and is not
  exceeded at n ≥ 256 in the tests.  The curvatures come from quadrature on the predicted q^k by
  central differences in q.  All these are O(L/n): at width 500 and depth 50 at most ≈ 0.1–0.2.

The prediction passes at a layer when it lies in ``[estimate·e^{−h}, estimate·e^{h}]`` with
``h = t·se + allowance``; ``ok`` is True when it passes at every layer, for q and for the ratio.

>>> from symgrad.theory.montecarlo import check_wide_network
>>> c = check_wide_network("relu", 2, 0, width=200, depth=10, batch=16)
>>> c.ok, c.q_predicted.shape
(True, (10,))
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

import numpy as np

from symgrad.errors import InvalidArgument
from symgrad.numeric.inputs import _check_memory
from symgrad.numeric.shared import _shared_pass
from symgrad.symbolic.build import network
from symgrad.theory import meanfield as _mf

__all__ = ["MonteCarloCheck", "check_wide_network"]


@dataclass(frozen=True)
class MonteCarloCheck:
    """The measured and predicted per-layer statistics of :func:`check_wide_network`.

    Arrays have shape (depth,); index l − 1 is layer l.

    * ``q_measured``, ``q_predicted``: q^l, the pre-activations' second moment (units of z²);
      ``q_ci_low``, ``q_ci_high``: the interval around the measurement;
    * ``grad_ratio_measured``, ``grad_ratio_predicted``: E‖δ^l‖²/E‖δ^L‖² (dimensionless; 1 at
      layer L); ``ci_low``, ``ci_high``: the interval around the measured ratio;
    * ``q_finite_width``, ``grad_finite_width``: the finite-width allowances (log space) that
      the intervals include;
    * ``q_samples``, ``grad_samples``: (repeats, depth), each network's own ``q_r^l`` and
      ``A_r^l`` (batch mean of ‖δ^l‖², units of (∂C/∂z)²), from which the estimates and the
      sampling part of the intervals are formed (module docstring);
    * ``ok``: every prediction lies in its interval; ``worst``: the layer that is farthest out
      (or nearest to the edge), as ``(what, layer, measured, predicted, low, high, excess)``,
      ``excess`` = |log(predicted/measured)| / half-width (> 1 means outside).
    """

    activation: str
    sigma_w2: float
    sigma_b2: float
    q0: float
    width: int
    depth: int
    batch: int
    repeats: int
    level: float
    q_measured: np.ndarray
    q_predicted: np.ndarray
    q_ci_low: np.ndarray
    q_ci_high: np.ndarray
    grad_ratio_measured: np.ndarray
    grad_ratio_predicted: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    q_finite_width: np.ndarray
    grad_finite_width: np.ndarray
    q_samples: np.ndarray
    grad_samples: np.ndarray
    ok: bool = False
    worst: tuple = ()

    def against(self, *, q_predicted=None, grad_ratio_predicted=None) -> "MonteCarloCheck":
        """The same measurement judged against other predictions (arrays of shape (depth,)),
        e.g. a perturbed one: a check that cannot fail checks nothing.

        >>> c = check_wide_network("tanh", 1, 0, width=200, depth=10, batch=16)
        >>> c.against(q_predicted=c.q_predicted * 1.2).ok
        False
        """
        qp = self.q_predicted if q_predicted is None else np.asarray(q_predicted, dtype=float)
        gp = self.grad_ratio_predicted if grad_ratio_predicted is None else np.asarray(grad_ratio_predicted, dtype=float)
        for name, arr in (("q_predicted", qp), ("grad_ratio_predicted", gp)):
            if arr.shape != (self.depth,):
                raise InvalidArgument("%s has shape %s; expected (depth,) = (%d,)" % (name, arr.shape, self.depth))
        return _judge(dataclasses.replace(self, q_predicted=qp, grad_ratio_predicted=gp))

    def __repr__(self):
        return "MonteCarloCheck(%s, sigma_w2=%g, sigma_b2=%g, width=%d, depth=%d, batch=%d, repeats=%d, ok=%s)" % (
            self.activation, self.sigma_w2, self.sigma_b2, self.width, self.depth, self.batch, self.repeats, self.ok)

    def summary(self) -> str:
        """A few lines: the set-up, ok or not, and the worst layer with its interval."""
        what, layer, meas, pred, lo, hi, ex = self.worst
        head = ("Monte-Carlo check of mean field: %s, sigma_w2=%g, sigma_b2=%g, q0=%g; width %d, depth %d, batch %d, "
                "%d networks, family-wise level %g" % (self.activation, self.sigma_w2, self.sigma_b2, self.q0, self.width,
                                                     self.depth, self.batch, self.repeats, self.level))
        verdict = "ok: every layer's prediction lies in its interval" if self.ok else "FAILED: a prediction lies outside its interval"
        rows = ["  %s" % verdict,
                "  worst: %s at layer %d: measured %.6g, predicted %.6g, interval [%.6g, %.6g] (%.2f of the half-width)"
                % (what, layer, meas, pred, lo, hi, ex),
                "  q^L measured %.6g, predicted %.6g;  E|d^1|^2/E|d^L|^2 measured %.6g, predicted %.6g"
                % (self.q_measured[-1], self.q_predicted[-1], self.grad_ratio_measured[0], self.grad_ratio_predicted[0])]
        return "\n".join([head] + rows)


def _log_excess(meas, pred, lo, hi):
    """|log(pred/meas)| / half-width, per layer (half-width in log space; both bounds symmetric)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.log(hi / meas)
        d = np.abs(np.log(np.where(pred > 0, pred, np.nan) / meas))
        ex = np.where(d == 0, 0.0, d / np.where(h > 0, h, np.nan))
        return np.where(np.isfinite(d), ex, np.inf)


def _judge(c: MonteCarloCheck) -> MonteCarloCheck:
    eq = _log_excess(c.q_measured, c.q_predicted, c.q_ci_low, c.q_ci_high)
    eg = _log_excess(c.grad_ratio_measured, c.grad_ratio_predicted, c.ci_low, c.ci_high)
    eq = np.where(np.isnan(eq), np.inf, eq)
    eg = np.where(np.isnan(eg), np.inf, eg)
    iq, ig = int(np.argmax(eq)), int(np.argmax(eg))
    if eq[iq] >= eg[ig]:
        worst = ("q", iq + 1, float(c.q_measured[iq]), float(c.q_predicted[iq]), float(c.q_ci_low[iq]), float(c.q_ci_high[iq]), float(eq[iq]))
    else:
        worst = ("grad ratio", ig + 1, float(c.grad_ratio_measured[ig]), float(c.grad_ratio_predicted[ig]),
                 float(c.ci_low[ig]), float(c.ci_high[ig]), float(eg[ig]))
    ok = bool(np.all(eq <= 1.0) and np.all(eg <= 1.0))
    return dataclasses.replace(c, ok=ok, worst=worst)


def _positive_int(name, v, minimum=1):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
        raise InvalidArgument("%s=%r must be an int ≥ %d, e.g. %s=%d" % (name, v, minimum, name, max(minimum, 8)))
    return int(v)


def _moments(act, qs):
    """At each predicted q (> 0; q = 0 is the linear limit): P(q) = E[φ'(√q Z)²], the relative
    variance v = Var[φ²]/E[φ²]², and from central differences at q(1 ± 1/64) the derivatives
    q M'(q), q² M''(q), q P'(q)/P and q² P''(q)/P (M(q) = E[φ(√q Z)²]); each by the meanfield
    quadrature."""
    kinks = _mf._kinks(act)
    # The quadrature's pieces already split at 0, and a kink at 0 stays at 0 whatever the scale.
    kinks = () if all(k == 0 for k in kinks) else kinks
    qs = np.asarray(qs, dtype=float)
    pos = qs > 0
    k = int(pos.sum())
    h = 1.0 / 64
    out = {key: np.zeros_like(qs) for key in ("M", "P", "v", "qM1", "q2M2", "eP", "cP")}
    P0, _ = _mf._prime2_moment(act, 0.0)
    out["P"][~pos] = float(P0[0])
    out["v"][~pos] = 2.0  # φ(√q Z)² ≈ φ'(0)² q Z² as q → 0: v = Var[Z²] = 2
    if k:
        qp = qs[pos]
        s = np.sqrt(np.concatenate([qp * (1 - h), qp, qp * (1 + h)]))
        M, _ = _mf._expect(_mf._square(_mf._val(act)), s, kinks)
        P, _ = _mf._expect(_mf._square(_mf._grad(act)), s, kinks)
        M4, _ = _mf._expect(_mf._square(_mf._square(_mf._val(act))), s, kinks)
        Mm, Mc, Mp = M[:k], M[k:2 * k], M[2 * k:]
        Pm, Pc, Pp = P[:k], P[k:2 * k], P[2 * k:]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            out["M"][pos], out["P"][pos] = Mc, Pc
            out["v"][pos] = np.where(Mc > 0, M4[k:2 * k] / np.square(Mc) - 1.0, 2.0)
            out["qM1"][pos] = (Mp - Mm) / (2 * h)
            out["q2M2"][pos] = (Mp - 2 * Mc + Mm) / (h * h)
            out["eP"][pos] = np.where(Pc > 0, (Pp - Pm) / (2 * h * Pc), 0.0)
            out["cP"][pos] = np.where(Pc > 0, (Pp - 2 * Pc + Pm) / (h * h * Pc), 0.0)
    for key in out:
        out[key] = np.nan_to_num(out[key], nan=0.0, posinf=0.0, neginf=0.0)
    out["v"] = np.maximum(out["v"], 0.0)
    return out


def _finite_width(mo, qp, w2f, n):
    """The finite-width allowances in log space (module docstring): ``fw_q`` (depth,) for q^l
    and ``fw_g`` (depth,) for the gradient ratio at layer l."""
    L = len(qp)
    # λ_k: the elasticity d log q^{k+1} / d log q^k of the length map; η_k²: the fresh relative
    # variance that layer k's n units add to s_{k+1}²; V_k = Var(log s_k²) (AR(1) in depth).
    nxt = np.append(qp[1:], qp[-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.nan_to_num(np.abs(w2f * mo["qM1"] / nxt), nan=0.0, posinf=0.0)
        eta2 = np.nan_to_num(np.square(w2f * mo["M"] / nxt) * mo["v"] / n, nan=0.0, posinf=0.0)
        jq = np.nan_to_num(0.5 * w2f * np.abs(mo["q2M2"]) / nxt, nan=0.0, posinf=0.0)
    V = np.zeros(L)
    beta = np.zeros(L)
    for i in range(L - 1):
        V[i + 1] = lam[i] ** 2 * V[i] + eta2[i]
        beta[i + 1] = lam[i] * beta[i] + jq[i] * V[i]
    # Backward: Jensen on each factor χ^k = σ_w² P(s_k²), the gradient-independence allowance
    # 1/n, and ½ Var(Σ_{k≥l} e_k ε_k) for the product of correlated factors, with
    # Cov(ε_j, ε_k) = V_j Π_{i=j}^{k−1} λ_i (j ≤ k).
    step = 0.5 * np.abs(mo["cP"]) * V + 1.0 / n
    e = mo["eP"]
    S = np.zeros(L)
    # S_l = Σ_{j,k=l}^{L−1} e_j e_k Cov(ε_j, ε_k), from the bottom-right corner up.
    acc = 0.0
    for j in range(L - 2, -1, -1):
        cross, c = 0.0, V[j]
        for kk in range(j + 1, L - 1):
            c *= lam[kk - 1]
            cross += c * e[kk]
        acc += e[j] ** 2 * V[j] + 2.0 * e[j] * cross
        S[j] = acc
    sums = np.concatenate([np.cumsum(step[:-1][::-1])[::-1], [0.0]])
    return beta, sums + 0.5 * np.abs(S)


def _predict(act, w2f, b2f, q0f, L):
    """q^1 = σ_w² q0 + σ_b², then the length map q ↦ σ_w² M(q) + σ_b² (the quadrature M of
    :func:`~symgrad.theory.meanfield.length_map`, without its SymPy front end: L iterates)."""
    qs = [w2f * q0f + b2f]
    for _ in range(L - 1):
        m, _ = _mf._second_moment(act, qs[-1])
        qs.append(w2f * float(m[0]) + b2f)
    return np.array(qs)


def check_wide_network(activation, sigma_w2, sigma_b2, *, width: int = 500, depth: int = 50, batch: int = 64, seed=0,
                       q0=1.0, repeats: int = 12, level: float = 0.99) -> MonteCarloCheck:
    """Sample ``repeats`` random dense networks and compare their per-layer q^l and gradient
    ratios E‖δ^l‖²/E‖δ^L‖² with mean field (derivation of the prediction and of the interval in
    the module docstring).

    * ``activation``: a built-in name, a custom string or an Activation;
    * ``sigma_w2``, ``sigma_b2``: the weight and bias variances (W_ij ~ N(0, σ_w²/width));
    * ``width``, ``depth``: units per layer (≥ 2) and layers (≥ 1); mean field needs the
      width large (≥ 500 is the issue's standard) and the allowances grow like depth/width;
    * ``batch``: inputs per network; ``repeats``: independent networks (≥ 3; the sampling
      error is estimated from their spread); ``seed``: an int (or None for fresh entropy);
    * ``q0``: the inputs' per-unit second moment ‖x‖²/width (> 0);
    * ``level``: the family-wise confidence level over all 2·depth comparisons, in (0.5, 1):
      with ``level=0.99`` a network that follows mean field fails the check at most about 1% of
      the time (Bonferroni; each layer's interval is at 1 − 0.01/(2·depth)).

    Returns a :class:`MonteCarloCheck`.  Raises :class:`~symgrad.InvalidArgument` for a bad
    argument (naming it), for variances whose length map has no finite fixed point or whose
    q^l leaves float64, and for networks that do not fit in memory.  Cost: repeats × depth ×
    width² normal draws (float32 draws, float64 arithmetic) plus three GEMMs per layer.

    >>> c = check_wide_network("tanh", 1, 0, width=200, depth=8, batch=8)
    >>> c.ok, round(float(c.grad_ratio_predicted[-1]), 12)
    (True, 1.0)
    """
    act = _mf._act(activation)
    (_, w2f), (_, b2f) = _mf._variance("sigma_w2", sigma_w2), _mf._variance("sigma_b2", sigma_b2)
    _, q0f = _mf._variance("q0", q0, positive=True)
    n = _positive_int("width", width, 2)
    L = _positive_int("depth", depth, 1)
    B = _positive_int("batch", batch, 1)
    R = _positive_int("repeats", repeats, 3)
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not (0.5 < float(level) < 1):
        raise InvalidArgument("level=%r must be a probability in (0.5, 1), e.g. level=0.99" % (level,))
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
        raise InvalidArgument("seed=%r must be a non-negative int or None" % (seed,))
    _check_memory("check_wide_network(width=%d, depth=%d, batch=%d)" % (n, L, B),
                  L * n * n * 12 + 2 * L * B * n * 8 + 8 * B * n * 8, "use a smaller width or depth")
    qp = _predict(act, w2f, b2f, q0f, L)
    if not np.all(np.isfinite(qp)) or qp.max() > _mf.MAX_VARIANCE:
        raise InvalidArgument("the predicted q^l leaves float64's useful range (q^%d = %g) with %s at σ_w² = %g, σ_b² = %g; lower σ_w²"
                              % (int(np.argmax(~np.isfinite(qp) | (qp > _mf.MAX_VARIANCE))) + 1, float(qp.max()), act.name, w2f, b2f))
    mo = _moments(act, qp)
    chi = w2f * mo["P"]
    # Π_{k=l}^{L−1} χ^k in log space (0 at layer L).
    with np.errstate(divide="ignore"):
        logchi = np.log(chi)
    log_gp = np.concatenate([np.cumsum(logchi[:-1][::-1])[::-1], [0.0]])
    gp = np.exp(log_gp)

    fw_q, fw_g = _finite_width(mo, qp, w2f, n)

    net = network([n] * (L + 1), act, "quadratic")
    ss = np.random.SeedSequence(seed).spawn(R)
    qs, As = np.empty((R, L)), np.empty((R, L))
    sw, sb = math.sqrt(w2f / n), math.sqrt(b2f)
    # One set of buffers for all repetitions (released when the call returns): the weights are
    # drawn in float32 (half the time of float64 draws) and scaled into float64 in one pass.
    Ws = np.empty((L, n, n))
    buf = np.empty((n, n), dtype=np.float32)
    f64 = np.dtype(np.float64)
    zblock = np.empty(L * B * n)  # the pass's z^l, overwritten by each repetition
    for r in range(R):
        rng = np.random.default_rng(ss[r])
        for l in range(L):
            rng.standard_normal(out=buf, dtype=np.float32)
            np.multiply(buf, sw, out=Ws[l])
        bs = rng.standard_normal((L, n)) * sb
        x = rng.standard_normal((B, n))
        x *= np.sqrt(n * q0f / np.einsum("ij,ij->i", x, x))[:, None]
        res = _shared_pass(net, list(Ws), list(bs), x, None, rng.standard_normal((B, n)), False, f64, zblock)
        qs[r], As[r] = res.q, res.delta_sq_mean

    from scipy.stats import t as _t

    # Bonferroni over the 2L comparisons (q and the ratio at each layer): each at 1 − (1 − level)/(2L).
    alpha = (1.0 - float(level)) / (2 * L)
    tq = float(_t.ppf(1.0 - alpha / 2, R - 1))
    qm = qs.mean(axis=0)
    se_q = np.sqrt(np.var(qs / qm, axis=0, ddof=1) / R)
    Abar = As.mean(axis=0)
    gm = Abar / Abar[-1]
    rel = As / Abar - (As[:, -1] / Abar[-1])[:, None]
    se_g = np.sqrt(np.var(rel, axis=0, ddof=1) / R)
    hq = tq * se_q + fw_q
    hg = tq * se_g + fw_g
    c = MonteCarloCheck(act.name, w2f, b2f, q0f, n, L, B, R, float(level),
                        qm, qp, qm * np.exp(-hq), qm * np.exp(hq),
                        gm, gp, gm * np.exp(-hg), gm * np.exp(hg), fw_q, fw_g, qs, As)
    return _judge(c)
