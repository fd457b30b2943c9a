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
C_VAL, C_GRAD, C_LOG = 10, 20, 4
TINY = float(np.finfo(np.float64).tiny)
_SENS = {"sigmoid": 1.0, "tanh": 2.0, "identity": 0.0}


def _phi(name, z):
    if name == "sigmoid":
        return 1 / (1 + mpmath.exp(-z))
    if name == "tanh":
        return mpmath.tanh(z)
    return z


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
        dz.append(float(abs(w[j])) * da[j] + U * float(abs(w[j] * a[j])) + U * float(abs(zj)))
        aj = _phi(names[j], zj)
        a.append(aj)
        da.append(float(_dphi(names[j], zj, aj)) * dz[j] + C_VAL * U * float(abs(aj)))
    g = [_dphi(names[j], z[j], a[j + 1]) for j in range(L)]
    cancel = net.cost.cancels_with(net.activations[-1])
    if cancel:
        zl = z[-1]
        dL = _phi("sigmoid", zl) - y
        loss = mpmath.log1p(mpmath.exp(-abs(zl))) + max(zl, 0) - y * zl
        s = _phi("sigmoid", zl)
        part = s if zl < 0 else ((1 - s) if y >= 0.5 else s)
        err_out = float(g[-1]) * dz[-1] + C_VAL * U * float(part) + U * float(abs(dL))
    else:
        diff = a[L] - y
        err_out = da[L] + U * float(abs(diff))
        if net.cost.name == "cross_entropy":
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
    elif net.cost.name == "quadratic":
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
    if exact == 0:  # an exact zero (a = y, a0 = 0, w = 0) must come back as zero
        assert got == 0.0, (what, got)
        return
    err = abs(mpmath.mpf(got) - exact)
    allowed = rel_bound * abs(exact) + mpmath.mpf(2) ** -1075
    if abs(exact) < TINY:  # a subnormal result has an absolute ulp of 2^-1074
        allowed += mpmath.mpf(2) ** -1074
    assert err <= allowed, "%s: got %r, exact %s, error %.3g > bound %.3g (relative bound %.3g)" % (
        what, got, mpmath.nstr(exact, 17), float(err), float(allowed), rel_bound)
