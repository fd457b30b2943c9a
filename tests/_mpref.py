"""A high-precision reference for chain gradients, and the forward-error bound a float64 kernel
must meet against it.

The reference evaluates the chain in mpmath at 40 digits from the very same float64 inputs, so
it is the exact gradient to far below one ulp.  The bound is a first-order running error
analysis of the float64 algorithm (unit roundoff u = 2^-53), computed from the exact values:

* forward:  Δz_j ≤ |w_j| Δa_{j−1} + u |w_j a_{j−1}| + u |z_j|       (a product and a sum)
            Δa_j ≤ |φ'(z_j)| Δz_j + C_VAL u |a_j|
* each factor φ'(ẑ_j) is off by at most  S_φ Δz_j + C_GRAD u  relative, with S_φ = sup|φ''/φ'|
  (1 for σ, 2 for tanh, 0 for the identity);
* every product adds one rounding (u);
* the output factor a_L − y (or σ(z_L) − y from the logit) is off by Δa_L (or σ'(z_L) Δz_L) plus
  its own roundings, relative to its exact value: this is where a_L ≈ y makes the gradient
  ill-conditioned, and the bound grows exactly as the conditioning does;
* ∂C/∂w_j adds the relative error of a_{j−1}.

* a factor below the smallest normal double (σ'(800)) is rebuilt from its log, off by C_LOG·u·|log x|.

C_VAL = 10 and C_GRAD = 20 count the roundings of the stable kernels (exp within 2 ulp, a sum, a
division, a product, …) with room to spare; nothing here depends on how a particular CPU rounds:
any IEEE double arithmetic with an exp/tanh within 2 ulp meets the bound, FMA or not.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np

U = 2.0 ** -53
ETA = 2.0 ** -1074  # the subnormal spacing: an absolute error per rounding near 0
C_VAL, C_GRAD, C_LOG = 10, 20, 4
TINY = float(np.finfo(np.float64).tiny)
_SENS = {"sigmoid": 1.0, "tanh": 2.0, "identity": 0.0}


def _phi(name, z):
    if name == "sigmoid":
        return 1 / (1 + mpmath.exp(-z))
    if name == "tanh":
        return mpmath.tanh(z)
    return z


def _phi_minus_y(name, z, y):
    """φ(z) − y without cancelling at the working precision where φ(z) → 1 and y = 1:
    σ(z) − y = (1 − y) − σ(−z) and tanh(z) − y = (1 − y) − 2/(e^{2z} + 1) for z ≥ 1 (1 − y is
    exact for a double y near 1)."""
    if name == "sigmoid" and z >= 1:
        return (1 - y) - 1 / (1 + mpmath.exp(z))
    if name == "tanh" and z >= 1:
        return (1 - y) - 2 / (mpmath.exp(2 * z) + 1)
    return _phi(name, z) - y


def _dphi(name, z, a):
    if name == "sigmoid":
        # σ(1 − σ) cancels at high precision too for |z| ≫ 40: use e^{−|z|}/(1 + e^{−|z|})²
        e = mpmath.exp(-abs(z))
        return e / (1 + e) ** 2
    if name == "tanh":
        return mpmath.sech(z) ** 2
    return mpmath.mpf(1)


def _from_log(x):
    """A factor below the smallest normal double is rebuilt from its log: m = e^{r}, r = log|x| −
    k ln 2, where log|x| and k ln 2 are each off by about u·|log x|."""
    if x == 0 or abs(x) >= TINY:
        return 0.0
    return C_LOG * U * float(abs(mpmath.log(abs(x))))


def chain_reference(net, p, i=None):
    """Exact gradients, loss and per-gradient relative error bounds for one sample ``i`` (None:
    unbatched).  Returns (grads: name → mpf, loss: mpf, bound: name → relative bound, and
    "loss" → the absolute bound on the loss)."""
    mpmath.mp.dps = 40
    names = [a.name for a in net.activations]
    assert all(nm in _SENS for nm in names), names
    L = net.depth
    get = lambda k: float(np.asarray(p[k]).reshape(-1)[i] if (i is not None and np.ndim(p[k])) else p[k])  # noqa: E731
    w = [mpmath.mpf(get("w%d" % j)) for j in range(1, L + 1)]
    b = [mpmath.mpf(get("b%d" % j)) for j in range(1, L + 1)]
    a = [mpmath.mpf(get("a0"))]
    y = mpmath.mpf(get("y"))
    z, da, dz = [], [0.0], []
    for j in range(L):
        zj = w[j] * a[j] + b[j]
        z.append(zj)
        # (+ 2^-1074: each of the two roundings is also off by up to half the subnormal spacing)
        dz.append(float(abs(w[j])) * da[j] + U * float(abs(w[j] * a[j])) + U * float(abs(zj)) + ETA)
        aj = _phi(names[j], zj)
        a.append(aj)
        da.append(float(_dphi(names[j], zj, aj)) * dz[j] + C_VAL * U * float(abs(aj)) + C_VAL * ETA)
    g = [_dphi(names[j], z[j], a[j + 1]) for j in range(L)]
    cancel = net.loss.cancels_with(net.activations[-1])
    if cancel:
        zl = z[-1]
        dL = _phi_minus_y("sigmoid", zl, y)
        loss = mpmath.log1p(mpmath.exp(-abs(zl))) + max(zl, 0) - y * zl
        s = _phi("sigmoid", zl)
        part = s if zl < 0 else ((1 - s) if y >= 0.5 else s)
        err_out = float(g[-1]) * dz[-1] + C_VAL * U * float(part) + U * float(abs(dL))
    else:
        diff = _phi_minus_y(names[-1], z[-1], y)
        err_out = da[L] + U * float(abs(diff))
        if net.loss.name == "cross_entropy":
            dL = g[-1] * diff / (a[L] * (1 - a[L]))
            loss = -(y * mpmath.log(a[L]) + (1 - y) * mpmath.log(1 - a[L]))
        else:
            dL = g[-1] * diff
            loss = diff ** 2 / 2
    den = abs(dL if cancel else diff)
    rel_out = float(min(mpmath.mpf(err_out) / den, 1e300)) if den != 0 else math.inf
    # The loss: ½ d² doubles d's relative error; softplus(z_L) − y z_L moves by |σ(z_L) − y| Δz_L,
    # plus the roundings of its three terms.
    if cancel:
        zf = float(zl)
        loss_err = float(abs(dL)) * dz[-1] + 4 * U * (max(zf, 0.0) + abs(float(y) * zf) + 1.0)
    elif net.loss.name == "quadratic":
        loss_err = (2 * rel_out + 3 * U) * float(loss)
    else:
        loss_err = math.inf  # not used by the tests
    # relative error contributed by each layer's factor φ'(z_j) (and the product's roundings)
    fac = [_SENS[names[j]] * dz[j] + C_GRAD * U + 2 * U + _from_log(g[j]) for j in range(L)]
    rel_out += _from_log(dL if cancel else diff)
    grads, bound = {}, {"loss": loss_err}
    delta = dL
    for j in range(L - 1, -1, -1):
        if j < L - 1:
            delta = delta * w[j + 1] * g[j]
        grads["b%d" % (j + 1)] = delta
        grads["w%d" % (j + 1)] = delta * a[j]
        rb = rel_out + sum(fac[j:]) + 2 * U
        bound["b%d" % (j + 1)] = rb
        ra = (float(min(mpmath.mpf(da[j]) / abs(a[j]), 1e300)) if a[j] != 0 else 0.0) + U + _from_log(a[j])
        bound["w%d" % (j + 1)] = rb + ra
    return grads, loss, bound


def assert_close_to_reference(got, exact, rel_bound, what=""):
    """|got − exact| ≤ rel_bound·|exact|, widened only by what float64 cannot represent: half an
    ulp of the result where it is subnormal (≤ 2^-1075), and ±inf exactly where |exact| rounds
    above the largest double."""
    got = float(got)
    ex = float(exact) if abs(exact) < mpmath.mpf("1e400") else math.copysign(math.inf, float(mpmath.sign(exact)))
    if math.isinf(ex) or abs(exact) > mpmath.mpf(np.finfo(np.float64).max) * (1 + mpmath.mpf(2) ** -54):
        assert got == math.copysign(math.inf, float(mpmath.sign(exact))), (what, got, exact)
        return
    assert not math.isnan(got), (what, got, exact)
    if exact != 0 and not rel_bound < 1:
        # The first-order bound says nothing (or is nan): only no nan, checked above.  This comes
        # before the rounds-to-zero case: an ill-conditioned z (w2 = 3e18 times tanh(−19), whose
        # rounding moves z2 by hundreds) can leave an O(1) result where the exact one is 1e-324.
        return
    if exact == 0 or abs(exact) < mpmath.mpf(2) ** -1076:  # an exact zero, or one that rounds to it
        assert got == 0.0, (what, got, exact)
        return
    err = abs(mpmath.mpf(got) - exact)
    allowed = rel_bound * abs(exact) + mpmath.mpf(2) ** -1075
    if abs(exact) < TINY:  # a subnormal result has an absolute ulp of 2^-1074
        allowed += mpmath.mpf(2) ** -1074
    assert err <= allowed, "%s: got %r, exact %s, error %.3g > bound %.3g (relative bound %.3g)" % (
        what, got, mpmath.nstr(exact, 17), float(err), float(allowed), rel_bound)


# ---------------------------------------------------------------------------------------------
# The same running error analysis in float64, vectorised, for any activation and for dense
# networks: a tolerance for comparing two float64 computations (symgrad's kernels, the closed form,
# PyTorch) that grows with the conditioning of each gradient, not one fitted to a CPU.
# ---------------------------------------------------------------------------------------------


def _sensitivity(act, z):
    """|d/dz log|φ'(z)|| = |φ''/φ'| by a central difference of the stable log|φ'| (doubled, plus
    one, for the difference's own error); where φ' vanishes this is large, as it should be."""
    z = np.asarray(z, dtype=np.float64)
    h = np.maximum(1e-5 * np.abs(z), 1e-5)
    with np.errstate(all="ignore"):
        lp, lm = act.log_abs_grad(z + h), act.log_abs_grad(z - h)
        s = np.abs(lp - lm) / (2 * h)
    return np.where(np.isfinite(s), 2 * s + 1, np.inf)


_KINKED = ("relu", "leaky_relu", "elu")


def _factor_rel(act, z, dz, torch_like):
    """Relative error bound of a computed φ'(z): C_GRAD u, plus the propagated Δz, plus (for
    PyTorch's formulas such as σ' = (1 − σ)σ, whose absolute error is a few u) 8u/|φ'(z)|; a kink
    within Δz of z can flip the branch: no bound (inf)."""
    g = np.abs(act.grad(z))
    with np.errstate(all="ignore"):
        rel = C_GRAD * U + _sensitivity(act, z) * dz
        if torch_like:
            rel = rel + 8 * U / np.maximum(g, 1e-300)
    if act.builtin and act.name in _KINKED:
        rel = np.where(np.abs(z) <= 2 * dz, np.inf, rel)
    return rel


def chain_tolerance(net, p, torch_like=False):
    """Absolute error bound (per sample) of every gradient of a chain computed in float64 by any
    of symgrad's kernels, or by PyTorch's formulas with ``torch_like``: name → array."""
    L = net.depth
    a = np.asarray(p["a0"], dtype=np.float64)
    y = np.asarray(p["y"], dtype=np.float64)
    da = np.zeros_like(a)
    As, Zs, dZ, dA = [a], [], [], [da]
    for j, act in enumerate(net.activations, start=1):
        w, b = np.asarray(p["w%d" % j], dtype=np.float64), np.asarray(p["b%d" % j], dtype=np.float64)
        with np.errstate(all="ignore"):
            z = w * a + b
            dz = np.abs(w) * da + U * (np.abs(w * a) + np.abs(z)) * 2 + ETA
            a = act.value(z)
            da = np.abs(act.grad(z)) * dz + C_VAL * U * np.abs(a) + C_VAL * ETA
            if torch_like:  # PyTorch's φ (GELU's z·Φ(z) via 1 + erf) errs by a few u absolutely
                da = da + 8 * U * (1 + np.abs(z))
        Zs.append(z)
        dZ.append(dz)
        As.append(a)
        dA.append(da)
    out = net.activations[-1]
    with np.errstate(all="ignore"):
        if net.loss.cancels_with(out):
            s = out.value(Zs[-1])
            dL = s - y
            err_out = np.abs(out.grad(Zs[-1])) * dZ[-1] + C_VAL * U + U * np.abs(dL)
            mag, rel = np.abs(dL), err_out / np.abs(dL)
        else:
            diff = As[-1] - y
            rel = (da + U * np.abs(diff)) / np.abs(diff) + _factor_rel(out, Zs[-1], dZ[-1], torch_like)
            mag = np.abs(out.grad(Zs[-1]) * diff)
            if net.loss.name == "cross_entropy":
                aL = As[-1]
                rel = rel + (da + U) / np.abs(aL) + (da + U) / np.abs(1 - aL)
                mag = mag / np.abs(aL * (1 - aL))
        tol = {}
        for j in range(L - 1, -1, -1):
            if j < L - 1:
                w = np.abs(np.asarray(p["w%d" % (j + 2)], dtype=np.float64))
                mag = mag * w * np.abs(net.activations[j].grad(Zs[j]))
                rel = rel + _factor_rel(net.activations[j], Zs[j], dZ[j], torch_like) + 2 * U
            tol["b%d" % (j + 1)] = np.where(mag == 0, 0.0, rel * mag) + 2.0 ** -1074
            ra = np.where(As[j] == 0, 0.0, dA[j] / np.abs(As[j])) + U
            tol["w%d" % (j + 1)] = np.where(mag == 0, 0.0, (rel + ra) * mag * np.abs(As[j])) + 2.0 ** -1074
    return tol


def assert_within(got, ref, tol, what=""):
    got, ref, tol = (np.asarray(x, dtype=np.float64) for x in (got, ref, tol))
    with np.errstate(all="ignore"):
        err = np.abs(got - ref)
    bad = ~((err <= tol) | ((got == ref)))
    assert not bad.any(), "%s: %d entries off, e.g. got %r, ref %r, tolerance %r" % (
        what, int(bad.sum()), got[bad].flat[0], ref[bad].flat[0], tol[bad].flat[0])


def dense_tolerance(net, p, torch_like=False):
    """The same for a dense network (every entry of a batch; W shared or batched): sums are
    bounded through magnitudes, |fl(Σ t) − Σ t| ≤ (n + 2) u Σ|t|, so cancellation inside a sum
    widens the bound exactly as it loses digits.  name → array shaped like the gradient."""
    L = net.depth
    f = lambda k: np.asarray(p[k], dtype=np.float64)  # noqa: E731
    a, da = f("a0"), np.zeros_like(f("a0"))
    As, dAs, Zs, dZ = [a], [da], [], []
    mv = lambda W, v: np.einsum("...ij,...j->...i", W, v)  # noqa: E731
    vm = lambda W, v: np.einsum("...ij,...i->...j", W, v)  # noqa: E731
    with np.errstate(all="ignore"):
        for l, act in enumerate(net.activations, start=1):
            W, b = f("W%d" % l), f("b%d" % l)
            z = mv(W, a) + b
            za = mv(np.abs(W), np.abs(a)) + np.abs(b)
            dz = mv(np.abs(W), da) + U * (W.shape[-1] + 2) * za + W.shape[-1] * ETA
            a = act.value(z)
            da = np.abs(act.grad(z)) * dz + C_VAL * U * np.abs(a) + C_VAL * ETA
            if torch_like:
                da = da + 8 * U * (1 + np.abs(z))
            Zs.append(z), dZ.append(dz), As.append(a), dAs.append(da)
        out, y = net.activations[-1], f("y")
        if net.loss.cancels_with(out):
            d = out.value(Zs[-1]) - y
            M = np.abs(d)
            E = np.abs(out.grad(Zs[-1])) * dZ[-1] + C_VAL * U + U * M
        else:
            diff = As[-1] - y
            g = np.abs(out.grad(Zs[-1]))
            M = g * np.abs(diff)
            E = g * (da + U * np.abs(diff)) + np.where(M == 0, 0.0, M * _factor_rel(out, Zs[-1], dZ[-1], torch_like))
            if net.loss.name == "cross_entropy":
                aL = As[-1]
                q = 1 / np.abs(aL * (1 - aL))
                E = E * q + M * q * ((da + U) / np.abs(aL) + (da + U) / np.abs(1 - aL))
                M = M * q
        tol = {}
        for l in range(L, 0, -1):
            tol["b%d" % l] = E + 2.0 ** -1074
            ap, dap = np.abs(As[l - 1]), dAs[l - 1]
            tol["W%d" % l] = E[..., :, None] * ap[..., None, :] + M[..., :, None] * (dap + U * ap)[..., None, :] + 2.0 ** -1074
            if l > 1:
                W = np.abs(f("W%d" % l))
                Mv = vm(W, M)
                Ev = vm(W, E) + U * (W.shape[-2] + 2) * Mv
                act = net.activations[l - 2]
                g = np.abs(act.grad(Zs[l - 2]))
                M = g * Mv
                E = g * Ev + np.where(M == 0, 0.0, M * _factor_rel(act, Zs[l - 2], dZ[l - 2], torch_like))
    return tol
