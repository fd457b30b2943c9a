"""Sweep benchmark (issue #15): the speed-up of a Monte-Carlo sweep from 1 to 2 Dask workers.

One grid (tanh, σ_w² × σ_b², width 200, depth 20, batch 16, 6 networks per point) runs on a local
cluster of 1 worker and then of 2 (each worker a single-threaded process, with BLAS held to one
thread so that the workers, not BLAS threads, share the cores), in the same run; the tables must
be equal byte for byte (per-point seeds).  The time of each includes starting its cluster, which
is reported apart.  Run:  python benchmarks/bench_sweep.py [POINTS_PER_AXIS]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"  # before NumPy loads, here and in the workers (they inherit the environment)

import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def _warm() -> None:
    """Import symgrad's sweep on a worker (so that a cluster's start-up time includes it)."""
    import symgrad.sweep  # noqa: F401


def main() -> None:
    from distributed import Client, LocalCluster

    from symgrad import sweep

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    pts = sweep.grid(["tanh"], [float(v) for v in (0.5 + 2.5 * i / (n - 1) for i in range(n))],
                     [0.05 * i for i in range(n)], [20], width=200, batch=16, repeats=6)
    print("grid: %d points (tanh, width 200, depth 20, batch 16, 6 networks each); %d CPUs" % (len(pts), os.cpu_count()))
    times, starts, tables = {}, {}, {}
    with tempfile.TemporaryDirectory() as d:
        for w in (1, 2):
            t0 = time.perf_counter()
            with LocalCluster(n_workers=w, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40) as c, Client(c) as cl:
                cl.run(_warm)
                starts[w] = start = time.perf_counter() - t0
            out = Path(d) / ("w%d.csv" % w)
            t1 = time.perf_counter()
            sweep.run_sweep(pts, out, seed=0, workers=w)
            times[w] = time.perf_counter() - t1
            tables[w] = out.read_bytes()
            print("%d worker%s: %.2f s (a cluster's start alone: %.2f s)" % (w, "" if w == 1 else "s", times[w], start))
    assert tables[1] == tables[2], "the tables differ between 1 and 2 workers"
    print("speed-up 1 -> 2 workers: %.2fx (tables identical); without the clusters' start: %.2fx"
          % (times[1] / times[2], (times[1] - starts[1]) / max(times[2] - starts[2], 1e-9)))


if __name__ == "__main__":
    main()
