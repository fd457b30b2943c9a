"""Symbolic derivation benchmark (foundation issue).

Prints time and peak memory for
  (a) the symbolic-depth closed form ∂C/∂b_j with a Product over k = j+1..L;
  (b) the expanded ∂C/∂b_1 (the longest chain) of a sigmoid chain, L = 10 .. 10000;
  (c) all 2L expanded closed forms (∂C/∂w_j and ∂C/∂b_j, j = 1..L), L = 10, 100, 1000;
and, as the comparator in the same run, naive ``sympy.diff`` of the composed loss at
L = 8, 16, 32, 64 (and whether its result can be lambdified at L = 128).
Memory is the growth of peak RSS over the process's size after imports (tracemalloc would
slow SymPy several-fold and distort the timings).

Each measurement runs in a fresh subprocess so SymPy's cache and earlier allocations do not
flatter later rows.  Run:  python benchmarks/bench_derivation.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

CASE = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy, sympy, symgrad
    sys.setrecursionlimit(1_000_000)  # the naive comparator recurses through its nested expression
    kind, L = sys.argv[1], int(sys.argv[2])

    def composed_loss(L):
        # The naive route: compose the whole network into one expression (what symgrad never does).
        a0, y = sympy.symbols("a0 y", real=True)
        w = sympy.symbols("w1:%d" % (L + 1), real=True)
        b = sympy.symbols("b1:%d" % (L + 1), real=True)
        a = a0
        for j in range(L):
            a = symgrad.spec.activations.sigmoid(w[j] * a + b[j])
        return (a - y) ** 2 / 2, [a0, y, *w, *b], b[0]

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if kind == "a":
        g = symgrad.chain(sympy.Symbol("L", integer=True, positive=True)).gradient("b")
        sympy.latex(g.expr)
        info = str(g.expr)
    elif kind == "b":
        g = symgrad.chain(L).gradient("b1")
        e = g.expr
        info = "%d factors" % len(e.args)
    elif kind == "c":
        net = symgrad.chain(L)
        grads = [net.gradient(p) for p in net.parameters]
        exprs = [g.expr for g in grads]
        info = "%d gradients, %d factor references" % (len(exprs), sum(len(g.factors) for g in grads))
    elif kind == "naive":
        C, syms, b1 = composed_loss(L)
        d = sympy.diff(C, b1)
        info = "result has %d nodes" % sum(1 for _ in sympy.preorder_traversal(d))
    elif kind == "lambdify":
        C, syms, b1 = composed_loss(L)
        d = sympy.diff(C, b1)
        sys.setrecursionlimit(1000)  # lambdify with Python's default limit, as a user would
        try:
            f = sympy.lambdify(syms, d, modules=[{"sigmoid": lambda x: 1 / (1 + numpy.exp(-x))}, "numpy"])
            f(*([0.1] * len(syms)))
            info = "lambdify ok"
        except (RecursionError, SyntaxError, MemoryError) as exc:
            info = "lambdify failed: %s: %s" % (type(exc).__name__, str(exc)[:40])
    dt = time.perf_counter() - t0
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024  # KiB on Linux
    print(json.dumps({"seconds": dt, "peak_mib": peak, "info": info}))
    """
)


def run(kind: str, L: int, timeout: float = 300.0) -> dict:
    try:
        out = subprocess.run([sys.executable, "-c", CASE, kind, str(L)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"seconds": float("nan"), "peak_mib": float("nan"), "info": "timed out after %.0f s" % timeout}
    if out.returncode != 0:
        return {"seconds": float("nan"), "peak_mib": float("nan"), "info": "failed: " + out.stderr.strip().splitlines()[-1][:80]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def row(label: str, r: dict) -> None:
    print("%-44s %9.3f s %9.1f MiB   %s" % (label, r["seconds"], r["peak_mib"], r["info"][:70]))


def main() -> None:
    print("symgrad derivation benchmark (each row a fresh process, imports excluded; time and peak-RSS growth)")
    row("(a) symbolic-depth dC/db_j", run("a", 0))
    for L in (10, 100, 1000, 10000):
        row("(b) expanded dC/db_1, L=%d" % L, run("b", L))
    for L in (10, 100, 1000):
        row("(c) all 2L closed forms, L=%d" % L, run("c", L))
    for L in (8, 16, 32, 64):
        row("naive sympy.diff of composed loss, L=%d" % L, run("naive", L))
    row("naive diff + lambdify, L=128", run("lambdify", 128))


if __name__ == "__main__":
    main()
