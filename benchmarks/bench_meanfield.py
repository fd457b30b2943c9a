"""Mean-field benchmark (typical-case issue).

Prints, each in a fresh process (so that caches do not flatter later rows):
  (a) the critical line of tanh at 100 values of σ_b² in [0.01, 2] (target: under 1 s), with the
      first call's one-off set-up (kink detection, SymPy limits) reported separately;
  (b) χ₁ for a custom activation string after parsing (target: under 0.2 s);
and, as the comparator in the same run, (c) the same critical line by brute force: Brent's method
on χ₁(σ_w²) − 1 at each σ_b², every χ₁ solving its own q* (what a direct implementation does).

Run:  python benchmarks/bench_meanfield.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

CASE = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from symgrad.theory import meanfield as mf
    kind = sys.argv[1]
    b2s = list(np.linspace(0.01, 2.0, 100))
    if kind == "line":
        t = time.perf_counter(); mf.critical_line("tanh", b2s[:1]); first = time.perf_counter() - t
        best = min(
            (lambda t0: (mf.critical_line("tanh", b2s), time.perf_counter() - t0)[1])(time.perf_counter())
            for _ in range(3))
        print(json.dumps({"first_call_s": first, "line_s": best}))
    elif kind == "custom":
        import symgrad
        act = symgrad.activation("z*sigmoid(z) + 0.1*tanh(z)")
        mf.chi1("tanh", 1.0, 0.1)  # warm the shared machinery, not this activation
        t = time.perf_counter(); c = mf.chi1(act, 1.5, 0.1); dt = time.perf_counter() - t
        print(json.dumps({"chi1_s": dt, "chi1": c.value, "error": c.error}))
    elif kind == "brute":
        from scipy.optimize import brentq
        mf.critical_line("tanh", b2s[:1])
        t = time.perf_counter()
        for b2 in b2s[:10]:  # ten points, scaled to 100 below
            brentq(lambda w: mf.chi1("tanh", w, b2).value - 1.0, 0.5, 8.0, xtol=1e-12)
        print(json.dumps({"line_s": (time.perf_counter() - t) * 10}))
    """
)


def run(kind):
    out = subprocess.run([sys.executable, "-c", CASE, kind], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    line, custom, brute = run("line"), run("custom"), run("brute")
    print("(a) tanh critical line, 100 values of sigma_b^2: %.3f s (best of 3; first call's set-up %.2f s)  target < 1 s"
          % (line["line_s"], line["first_call_s"]))
    print("(b) chi1 of 'z*sigmoid(z) + 0.1*tanh(z)' after parsing: %.3f s (chi1 = %.12g +- %.1e)  target < 0.2 s"
          % (custom["chi1_s"], custom["chi1"], custom["error"]))
    print("(c) comparator, Brent on chi1 - 1 per sigma_b^2 (10 points, scaled to 100): %.2f s; ratio %.0fx"
          % (brute["line_s"], brute["line_s"] / line["line_s"]))


if __name__ == "__main__":
    main()
