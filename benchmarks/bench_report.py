"""The gradient-flow report's time on a [784, 256, 256, 256, 10] ReLU MLP with a batch of 512
(issue #14's target: under 1 s), beside PyTorch autograd doing one forward and backward pass of the
same model on the same batch in the same process (the least any per-layer gradient report must do),
and the report's parts (forward, shared-weight backward, SVDs, mean field).

Each thread count runs in its own subprocess (OPENBLAS_NUM_THREADS / torch.set_num_threads set
before the first BLAS call); the report and PyTorch alternate, ROUNDS rounds, best of REPEAT each.
One thread is the headline (the machines are shared and noisy); two threads are printed too.

    python benchmarks/bench_report.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

ROUNDS, REPEAT = 3, 3
WIDTHS, BATCH = [784, 256, 256, 256, 10], 512

CASE = textwrap.dedent("""
    import json, math, resource, sys, time
    import numpy as np, torch
    import symgrad
    from symgrad.numeric.shared import backprop_shared
    from symgrad.numeric.evaluator import forward
    threads, rounds, repeat, widths, batch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    net = symgrad.network(widths, "relu")
    p = {"W%d" % l: rng.normal(0, math.sqrt(2 / n), (m, n)) for l, (n, m) in enumerate(zip(widths, widths[1:]), 1)}
    p.update({"b%d" % l: np.zeros(m) for l, m in enumerate(widths[1:], 1)})
    x, y = rng.normal(size=(batch, widths[0])), rng.uniform(size=(batch, widths[-1]))
    model = symgrad.to_torch(net, p)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def best(fn):
        t = math.inf
        for _ in range(repeat):
            s = time.perf_counter(); fn(); t = min(t, time.perf_counter() - s)
        return t

    def torch_pass():
        model.zero_grad(set_to_none=True)
        (0.5 * ((model(xt) - yt) ** 2).sum(dim=1).mean()).backward()

    allp = {**p, "a0": x, "y": y}
    parts = {"forward": lambda: forward(net, allp), "backprop_shared": lambda: backprop_shared(net, allp),
             "svd": lambda: [np.linalg.norm(p["W%d" % l], 2) for l in range(1, len(widths))]}
    symgrad.report(net, p, inputs=x, targets=y); torch_pass()  # warm up
    rows = []
    for _ in range(rounds):
        r = best(lambda: symgrad.report(net, p, inputs=x, targets=y))
        t = best(torch_pass)
        rows.append((r, t))
    out = {"rounds": rows, "parts": {k: best(f) for k, f in parts.items()},
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps(out))
""")


def main() -> int:
    for threads in (1, 2):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        res = subprocess.run([sys.executable, "-c", CASE, str(threads), str(ROUNDS), str(REPEAT), json.dumps(WIDTHS), str(BATCH)],
                             env=env, capture_output=True, text=True, check=True)
        d = json.loads(res.stdout)
        best_r = min(r for r, _ in d["rounds"])
        best_t = min(t for _, t in d["rounds"])
        print("%d thread%s: report %.3f s (target < 1 s); PyTorch forward+backward %.4f s; report / PyTorch pass %.1fx"
              % (threads, "" if threads == 1 else "s", best_r, best_t, best_r / best_t))
        print("   rounds (report s, torch s): %s" % ", ".join("(%.3f, %.4f)" % tuple(rt) for rt in d["rounds"]))
        print("   parts: %s; peak RSS of the process %.0f MiB"
              % (", ".join("%s %.3f s" % kv for kv in d["parts"].items()), d["peak_rss_mib"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
