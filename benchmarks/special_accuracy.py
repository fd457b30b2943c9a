"""Max error in ulps of the hand-written stable sigmoid / log-sigmoid / softplus forms symgrad
used before issue #12, against scipy.special / NumPy's library forms, over a wide grid; the
reference is mpmath at 60 digits.  Run: .venv/bin/python benchmarks/special_accuracy.py

The test tests/test_special_accuracy.py asserts the figures this script prints for the forms kept.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
from scipy.special import expit, log_expit


def grid():
    mags = [1e-300, 1e-200, 1e-100, 1e-20, 1e-8, 1e-3, 0.1, 0.5]
    mags += list(np.linspace(1.0, 40.0, 391)) + list(np.linspace(40.0, 800.0, 381)) + [1e3, 1e10, 1e100, 1e300]
    rng = np.random.default_rng(0)
    mags += list(np.exp(rng.uniform(math.log(1e-300), math.log(1e300), 400)))
    mags = np.array(sorted(set(float(m) for m in mags)))
    return np.concatenate([-mags[::-1], [0.0], mags])


def ulp_error(got, ref_mp):
    ref = float(ref_mp)
    if ref == 0.0 or not math.isfinite(ref):
        return 0.0 if got == ref else math.inf
    return abs(mpmath.mpf(got) - ref_mp) / np.spacing(abs(ref))


# The hand-written forms (before) and the library forms (after).
def old_sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def old_log_sigmoid(x):
    return -(np.maximum(-x, 0.0) + np.log1p(np.exp(-np.abs(x))))


def old_softplus(x):
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def old_dsigmoid(x):
    e = np.exp(-np.abs(x))
    return np.minimum(e / ((1.0 + e) * (1.0 + e)), 0.25)


def old_log_dsigmoid(x):
    a = np.abs(x)
    return -a - 2.0 * np.log1p(np.exp(-a))


def new_dsigmoid(x):
    return np.minimum(expit(x) * expit(-x), 0.25)


def new_log_dsigmoid(x):
    a = np.abs(x)
    return -a + 2.0 * log_expit(a)  # log σ(a) + log σ(−a), σ(−a) = e^{−a} σ(a)


def mp_sigmoid(x):
    return 1 / (1 + mpmath.exp(-x))


CASES = {
    "sigmoid": (old_sigmoid, expit, mp_sigmoid),
    "log_sigmoid": (old_log_sigmoid, log_expit, lambda x: -mpmath.log1p(mpmath.exp(-x))),
    "softplus": (old_softplus, lambda x: np.logaddexp(0.0, x), lambda x: mpmath.log1p(mpmath.exp(x))),
    "dsigmoid": (old_dsigmoid, new_dsigmoid, lambda x: mp_sigmoid(x) * mp_sigmoid(-x)),
    "log_dsigmoid": (old_log_dsigmoid, new_log_dsigmoid, lambda x: mpmath.log(mp_sigmoid(x) * mp_sigmoid(-x))),
}


TINY = float(np.finfo(np.float64).tiny)


def measure(names=None):
    """name -> (hand-written, library) max ulp over the grid, then the same over results >= TINY."""
    x = grid()
    out = {}
    with mpmath.workdps(60), np.errstate(over="raise", invalid="raise", divide="raise"):
        for name, (old, new, ref) in CASES.items():
            if names and name not in names:
                continue
            refs = [ref(mpmath.mpf(float(t))) for t in x]
            o, n = old(x), new(x)
            normal = [abs(float(r)) >= TINY for r in refs]
            out[name] = tuple(max(ulp_error(float(a), r) for a, r, k in zip(got, refs, normal) if k or not only_normal)
                              for only_normal in (False, True) for got in (o, n))
    return out


if __name__ == "__main__":
    print("%d points in [-1e300, 1e300] incl. ±1e-300, ±1..±800" % len(grid()))
    for name, (o, n, on, nn) in measure().items():
        print("%-13s hand-written %8.3g ulp  library %8.3g ulp   | results >= tiny: %6.2f  %6.2f" % (name, o, n, on, nn))
