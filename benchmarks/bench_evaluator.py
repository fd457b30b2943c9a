"""Numeric evaluator benchmark: symgrad's backprop vs PyTorch autograd vs naive lambdify.

One script, one run, same machine.  On a sigmoid chain of depth 50 with a batch of 200,000
independent draws it times the gradients of all 100 parameters for

  (1) symgrad.numeric.backprop (blocked, in place, NumPy);
  (2) PyTorch autograd on CPU: one leaf tensor per parameter, 2 threads, float64;
  (3) naive ``lambdify(sympy.diff(C, p))`` per parameter, at depths where that still works;

and prints layer-samples per second, the ratios (1)/(2) and (1)/(3) and the peak resident
memory of each case (each case runs in its own subprocess, so peaks do not mix).  (1) is
``backend="auto"``, i.e. the compiled kernel when numba is installed (``symgrad[jit]``), in a
loop that drops each result, as PyTorch's loop drops each ``.grad``; symgrad allocates its
outputs afresh on every call (it keeps no memory between calls).  Also timed: the same loop
passing the previous result as ``out=`` (the caller owns and reuses the memory), and the NumPy
kernel.  Because these machines are shared and noisy, symgrad and PyTorch
run in alternating rounds, each round best-of-REPEAT, and every round's ratio is printed beside
the ratio of the bests.  For scale, it also times the memory floor: copying every w and b row
into two fresh (L, batch) arrays, which any implementation must at least do.  It then reports
the depth-100000 log-space run and a dense [784, 30, 30, 30, 10] network with a batch of 1,000
(per-layer gradient norms vs PyTorch).

Per activation (symgrad.numeric._codegen generates one compiled kernel per activation from its one
definition): every built-in activation and a mixed tanh/ReLU chain, depth 50, batch 100,000, all
gradients, fresh output memory each call, symgrad and PyTorch in alternating rounds in one process,
on one thread (``torch.set_num_threads(1)``, ``threads=1``, NUMBA_NUM_THREADS=1) and then on two;
and, for the activations whose kernels call exp, expm1, log1p, tanh or erfc, the same one-thread run
with numba's ``math.*`` (scalar libm calls; no SVML in the pip llvmlite) in place of symgrad's
branch-free versions; then every activation again with every layer residual (a_l = a_{l−1} + 0.5·φ(z_l), on
both sides), one thread.  Runs in about eight minutes.  ``--elementary`` times each branch-free function
against its ``math.*`` counterpart alone, in ns per element of a numba loop (one thread, alternating
rounds, best of).

    python3 benchmarks/bench_evaluator.py                  # everything
    python3 benchmarks/bench_evaluator.py --activations    # the per-activation table only
    python3 benchmarks/bench_evaluator.py --elementary     # ns per element, branch-free vs libm
    python3 benchmarks/bench_evaluator.py --residual       # residual chain and dense network vs PyTorch

Residual networks (issue #14): a tanh chain with every layer a_l = a_{l−1} + 0.5·tanh(z_l), depth 50,
batch 200,000 (all per-sample gradients on both sides), and a dense network of width 256, depth 10,
batch 512, every layer residual, with one set of weights shared by the batch (both sides compute
the batch-summed ∂C/∂W^l, ∂C/∂b^l: symgrad's backprop_shared, PyTorch autograd; per-sample weight
gradients would be B×n×n and are computed by neither), alternating rounds, each side in its own
process for its peak RSS, one thread (headline) and two.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

DEPTH, BATCH, REPEAT, ROUNDS = 50, 200_000, 5, 3
ACT_BATCH = 100_000
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "silu", "gelu", "softsign", "identity", "tanh+relu")

CASE = textwrap.dedent(
    """
    import json, math, resource, sys, time
    import numpy as np
    import symgrad
    from symgrad.numeric import backprop, sample
    kind, depth, batch, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    out = {}

    def best(fn):
        fn()  # warm-up
        ts = []
        for _ in range(repeat):
            t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
        return min(ts)

    if kind in ("symgrad", "symgrad-out", "symgrad-numpy", "torch", "naive"):
        net = symgrad.chain(depth)
        p = sample(net, batch, seed=0)
    if kind == "symgrad":
        out["seconds"] = best(lambda: backprop(net, p, threads=2))
        from symgrad.numeric import _codegen
        out["backend"] = ("numba %s" % __import__("numba").__version__ if _codegen.chain_kernel.cache_info().currsize
                          else "numpy")
    elif kind == "symgrad-out":
        # The caller reuses the memory of its previous result (out=): no fresh pages per call.
        res = backprop(net, p, threads=2)
        out["seconds"] = best(lambda: backprop(net, p, threads=2, out=res))
    elif kind == "symgrad-numpy":
        out["seconds"] = best(lambda: backprop(net, p, threads=2, backend="numpy"))
    elif kind == "floor":
        from concurrent.futures import ThreadPoolExecutor
        net = symgrad.chain(depth)
        p = sample(net, batch, seed=0)
        rows = [(p["w%d" % j], p["b%d" % j]) for j in range(1, depth + 1)]
        pool = ThreadPoolExecutor(2)
        def copy():
            gw, gb = np.empty((depth, batch)), np.empty((depth, batch))
            def part(k):
                s, e = (0, batch // 2) if k == 0 else (batch // 2, batch)
                for j, (w, b) in enumerate(rows):
                    gw[j, s:e] = w[s:e]
                    gb[j, s:e] = b[s:e]
            list(pool.map(part, (0, 1)))
        out["seconds"] = best(copy)
    elif kind == "torch":
        import torch
        torch.set_num_threads(2)
        W = [torch.tensor(p["w%d" % j], requires_grad=True) for j in range(1, depth + 1)]
        B = [torch.tensor(p["b%d" % j], requires_grad=True) for j in range(1, depth + 1)]
        a0, y = torch.tensor(p["a0"]), torch.tensor(p["y"])
        def run():
            for t in W + B:
                t.grad = None
            a = a0
            for w, b in zip(W, B):
                a = torch.sigmoid(w * a + b)
            (0.5 * (a - y) ** 2).sum().backward()
        out["seconds"] = best(run)
        res = backprop(net, p)
        out["max_rel_diff"] = max(float(np.max(np.abs(W[j].grad.numpy() - res.grads["w%d" % (j + 1)]) /
                                                 np.maximum(np.abs(res.grads["w%d" % (j + 1)]), 1e-300))) for j in range(depth))
    elif kind == "naive":
        import sympy
        t0 = time.perf_counter()
        C = net.cost()
        s = net.symbols
        args = [s[k] for k in ("a0", "y") + net.parameters]
        sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731 - the naive σ a user would write
        fns = [sympy.lambdify(args, sympy.diff(C, s[q]), [{"sigmoid": sig}, "numpy"]) for q in net.parameters]
        out["setup_seconds"] = time.perf_counter() - t0
        vals = [p[k] for k in ("a0", "y") + net.parameters]
        with np.errstate(all="ignore"):
            out["seconds"] = best(lambda: [f(*vals) for f in fns])
    elif kind == "logspace":
        net = symgrad.chain(depth)
        p = sample(net, seed=0)
        t0 = time.perf_counter()
        res = backprop(net, p, log_space=True)
        out["seconds"] = time.perf_counter() - t0
        out["log_abs_b1"] = float(res.log_abs["b1"])
        out["linear_b1"] = float(res.grads["b1"])
        loc = symgrad.numeric.forward(net, p)
        act = net.activations[0]
        zs = np.array([loc["z%d" % j] for j in range(1, depth + 1)])
        lg = act.log_abs_grad(zs)
        ws = [math.log(abs(float(p["w%d" % j]))) for j in range(2, depth + 1)]
        aL = float(loc["a%d" % depth])
        exact = math.fsum(list(lg) + ws + [math.log(abs(aL - float(p["y"])))])
        out["fsum_reference"] = exact
        out["decay_rate_per_layer"] = exact / depth
    elif kind.startswith("acts"):
        # kind = "acts[-res|-mix]:<threads>[:libm]": every activation, symgrad and PyTorch alternating;
        # "acts-res": every layer residual, a_l = a_{l-1} + 0.5 φ(z_l), on both sides; "acts-mix":
        # odd layers residual, even layers plain, a_l = φ(z_l).
        import torch
        import torch.nn.functional as F
        from symgrad.numeric import _codegen
        from numba.core import config as numba_config
        parts = kind.split(":")
        threads, libm = int(parts[1]), parts[-1] == "libm"
        alpha = {"acts": None, "acts-res": 0.5, "acts-mix": [0.5 if j % 2 == 0 else None for j in range(depth)]}[parts[0]]
        alphas = alpha if isinstance(alpha, list) else [alpha] * depth
        if libm:
            _codegen.LIBM = True
            _codegen.form_of.cache_clear()
        torch.set_num_threads(threads)
        tf = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu, "leaky_relu": lambda x: F.leaky_relu(x, 0.01),
              "elu": F.elu, "softplus": F.softplus, "silu": F.silu, "gelu": F.gelu, "softsign": F.softsign,
              "identity": lambda x: x}
        names = sys.argv[5].split(",")
        out["svml"] = bool(numba_config.USING_SVML)
        for name in names:
            acts = name.split("+")
            layer = [acts[j % len(acts)] for j in range(depth)]
            net = symgrad.chain(depth, layer, residual=alpha)
            p = sample(net, batch, seed=0)
            W = [torch.tensor(p["w%d" % j], requires_grad=True) for j in range(1, depth + 1)]
            B = [torch.tensor(p["b%d" % j], requires_grad=True) for j in range(1, depth + 1)]
            a0, y = torch.tensor(p["a0"]), torch.tensor(p["y"])
            fs = [tf[a] for a in layer]
            def run_torch():
                for t in W + B:
                    t.grad = None
                a = a0
                for f, w, b, al in zip(fs, W, B, alphas):
                    a = f(w * a + b) if al is None else a + al * f(w * a + b)
                (0.5 * (a - y) ** 2).sum().backward()
            run_sym = lambda: backprop(net, p, threads=threads, backend="numba")  # noqa: E731
            ts, tt = [], []
            for _ in range(3):  # alternating rounds, each best-of-repeat
                ts.append(best(run_sym))
                tt.append(best(run_torch))
            out[name] = {"symgrad": min(ts), "torch": min(tt), "per_round": [b / a for a, b in zip(ts, tt)]}
    elif kind == "reslog":
        # a depth-100000 residual tanh chain in log space (batch 1): every log|dC/dp| finite
        net = symgrad.chain(depth, "tanh", residual=0.5)
        p = sample(net, seed=0)
        t0 = time.perf_counter()
        res = backprop(net, p, log_space=True)
        out["seconds"] = time.perf_counter() - t0
        out["log_abs_b1"] = float(res.log_abs["b1"])
        out["all_finite"] = bool(all(math.isfinite(float(v)) for v in res.log_abs.values()))
    elif kind.startswith("res-"):
        # kind = "res-<chain|dense>-<symgrad|torch>:<threads>": residual networks (issue #14).
        import torch
        what, threads = kind.split(":")[0], int(kind.split(":")[1])
        torch.set_num_threads(threads)
        alpha = 0.5
        if what.startswith("res-chain"):
            # a_l = a_{l-1} + α tanh(w_l a_{l-1} + b_l); all 2L per-sample gradients, fresh outputs
            net = symgrad.chain(depth, "tanh", residual=alpha)
            p = sample(net, batch, seed=0)
            if what.endswith("symgrad"):
                out["seconds"] = best(lambda: backprop(net, p, threads=threads))
                out["backend"] = "numba" if symgrad.numeric.compiled.available() else "numpy"
            else:
                W = [torch.tensor(p["w%d" % j], requires_grad=True) for j in range(1, depth + 1)]
                B = [torch.tensor(p["b%d" % j], requires_grad=True) for j in range(1, depth + 1)]
                a0, y = torch.tensor(p["a0"]), torch.tensor(p["y"])
                def run():
                    for t in W + B:
                        t.grad = None
                    a = a0
                    for w, b in zip(W, B):
                        a = a + alpha * torch.tanh(w * a + b)
                    (0.5 * (a - y) ** 2).sum().backward()
                out["seconds"] = best(run)
                res = backprop(net, p, threads=threads)
                # max |difference| relative to the layer's largest gradient: entry by entry, PyTorch's
                # tanh' = 1 − tanh² is exactly 0 where tanh rounds to ±1 (|z| > 19), symgrad's is not
                out["max_rel_diff"] = max(float(np.max(np.abs(W[j].grad.numpy() - res.grads["w%d" % (j + 1)])) /
                                                np.max(np.abs(res.grads["w%d" % (j + 1)]))) for j in range(depth))
        else:
            # dense, width 256, every layer residual: one W^l (256 x 256) shared by the batch; both sides
            # compute the batch-summed dC/dW^l and dC/db^l of C = sum over the batch of 1/2 |a^L - y|^2
            from symgrad.numeric.shared import backprop_shared
            width = 256
            net = symgrad.network([width] * (depth + 1), "tanh", residual=alpha)
            p = sample(net, init="xavier", seed=0)
            rng = np.random.default_rng(1)
            p["a0"], p["y"] = rng.normal(size=(batch, width)), rng.normal(size=(batch, width))
            if what.endswith("symgrad"):
                out["seconds"] = best(lambda: backprop_shared(net, p))
            else:
                Ws = [torch.tensor(p["W%d" % l], requires_grad=True) for l in range(1, depth + 1)]
                bs = [torch.tensor(p["b%d" % l], requires_grad=True) for l in range(1, depth + 1)]
                x, y = torch.tensor(p["a0"]), torch.tensor(p["y"])
                F = torch.nn.functional
                def run():
                    for t in Ws + bs:
                        t.grad = None
                    a = x
                    for W, b in zip(Ws, bs):
                        a = a + alpha * torch.tanh(F.linear(a, W, b))
                    (0.5 * (a - y) ** 2).sum().backward()
                out["seconds"] = best(run)
                r = backprop_shared(net, p)
                out["max_rel_diff"] = max(float(np.max(np.abs(Ws[l].grad.numpy() - r.grads["W%d" % (l + 1)])) /
                                                np.max(np.abs(r.grads["W%d" % (l + 1)]))) for l in range(depth))
    elif kind == "dense":
        import torch
        torch.set_num_threads(2)
        net = symgrad.network([784, 30, 30, 30, 10])
        p = sample(net, init="xavier", seed=0)  # one network (shared weights), a batch of inputs
        rng = np.random.default_rng(1)
        p["a0"], p["y"] = rng.normal(size=(batch, 784)), rng.uniform(size=(batch, 10))
        out["seconds"] = best(lambda: backprop(net, p))
        res = backprop(net, p)
        Ws = [torch.tensor(p["W%d" % l], requires_grad=True) for l in range(1, 5)]
        bs = [torch.tensor(p["b%d" % l], requires_grad=True) for l in range(1, 5)]
        a = torch.tensor(p["a0"])
        zs = []
        for W, b in zip(Ws, bs):
            z = a @ W.T + b
            z.retain_grad(); zs.append(z)
            a = torch.sigmoid(z)
        (0.5 * (a - torch.tensor(p["y"])) ** 2).sum().backward()
        torch_norms = np.stack([z.grad.norm(dim=1).numpy() for z in zs], axis=1)
        out["symgrad_mean_norms"] = res.layer_norms.mean(axis=0).tolist()
        out["torch_mean_norms"] = torch_norms.mean(axis=0).tolist()
        out["max_rel_diff"] = float(np.max(np.abs(res.layer_norms - torch_norms) / torch_norms))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))
    """
)


def run(kind, depth, batch, repeat=REPEAT, timeout=300, extra=()):
    env = dict(os.environ, NUMBA_NUM_THREADS="1") if kind.startswith("acts") else None
    if kind.startswith("res-"):  # the BLAS (NumPy's OpenBLAS, PyTorch's) on the case's thread count too
        th = kind.split(":")[1]
        env = dict(os.environ, OPENBLAS_NUM_THREADS=th, OMP_NUM_THREADS=th, MKL_NUM_THREADS=th, NUMBA_NUM_THREADS=th)
    proc = subprocess.run([sys.executable, "-c", CASE, kind, str(depth), str(batch), str(repeat), *extra],
                          capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def per_activation():
    """One ratio per built-in activation (and a mixed chain) vs PyTorch autograd, one and two threads."""
    print("per activation: chain depth %d, batch %d, all gradients, fresh outputs; symgrad (compiled, generated from each "
          "activation's definition) vs PyTorch autograd, alternating rounds, best of 3 rounds x %d" % (DEPTH, ACT_BATCH, 3))
    res = {th: run("acts:%d" % th, DEPTH, ACT_BATCH, repeat=3, timeout=900, extra=(",".join(ACTIVATIONS),)) for th in (1, 2)}
    slow = ("sigmoid", "tanh", "elu", "softplus", "silu", "gelu")
    libm = run("acts:1:libm", DEPTH, ACT_BATCH, repeat=3, timeout=900, extra=(",".join(slow),))
    for th, r in res.items():
        if "error" in r:
            print("  %d thread(s): failed (%s)" % (th, r["error"]))
    if any("error" in r for r in res.values()):
        return
    print("  numba SVML operational: %s" % res[1]["svml"])
    print("  %-12s %28s   %28s   %s" % ("activation", "1 thread: symgrad / torch (s)", "2 threads: symgrad / torch (s)",
                                        "1 thread with libm math.* instead of the branch-free exp/expm1/log1p/tanh/erfc"))
    for name in ACTIVATIONS:
        one, two = res[1][name], res[2][name]
        lm = libm.get(name) if "error" not in libm else None
        extra = ("%.4f s, ratio %.2f" % (lm["symgrad"], lm["torch"] / lm["symgrad"])) if lm else ""
        print("  %-12s %.4f / %.4f  ratio %5.2f   %.4f / %.4f  ratio %5.2f   %s"
              % (name, one["symgrad"], one["torch"], one["torch"] / one["symgrad"],
                 two["symgrad"], two["torch"], two["torch"] / two["symgrad"], extra))
    print("  (ratio = PyTorch seconds / symgrad seconds; >= 1.0 means symgrad is at least as fast)")
    for kind, what in (("acts-res", "residual chains (every layer a_l = a_(l-1) + 0.5 phi(z_l)"),
                       ("acts-mix", "mixed chains (odd layers residual as above, even layers plain a_l = phi(z_l)")):
        rr = {th: run("%s:%d" % (kind, th), DEPTH, ACT_BATCH, repeat=3, timeout=900, extra=(",".join(ACTIVATIONS),)) for th in (1, 2)}
        if any("error" in r for r in rr.values()):
            print("  %s: failed (%s)" % (what, "; ".join(r["error"] for r in rr.values() if "error" in r)))
            continue
        print("per activation, %s, same draw of w, b, a0, y):" % what)
        print("  %-12s %28s   %s" % ("activation", "1 thread: symgrad / torch (s)", "2 threads: symgrad / torch (s)"))
        for name in ACTIVATIONS:
            one, two = rr[1][name], rr[2][name]
            print("  %-12s %.4f / %.4f  ratio %5.2f   %.4f / %.4f  ratio %5.2f   (1 thread per round %s)"
                  % (name, one["symgrad"], one["torch"], one["torch"] / one["symgrad"], two["symgrad"], two["torch"],
                     two["torch"] / two["symgrad"], ", ".join("%.2f" % x for x in one["per_round"])))


ELEMENTARY = textwrap.dedent(
    """
    import json, math, time
    import numpy as np
    import numba
    from symgrad.numeric import compiled
    el = compiled.elementary()
    rng = np.random.default_rng(0)
    # (name, branch-free function, libm function, argument sample): each on its own domain
    cases = [("exp", el["exp_neg"], math.exp, -rng.uniform(0, 40, 4096)),
             ("expm1", el["expm1_neg"], math.expm1, -rng.uniform(0, 5, 4096)),
             ("log1p", el["log1p_unit"], math.log1p, rng.uniform(0, 1, 4096)),
             ("tanh", el["tanh_"], math.tanh, rng.normal(0, 3, 4096)),
             ("erfc", el["erfc_"], math.erfc, rng.normal(0, 10, 4096) / math.sqrt(2))]  # GELU's −z/√2
    def loop(f):
        @numba.njit(nogil=True, fastmath={"contract"}, error_model="numpy")
        def run(x, o):
            for i in range(x.size):
                o[i] = f(x[i])
        return run
    def ns(fn, x):
        o = np.empty_like(x)
        fn(x, o)
        ts = []
        for _ in range(7):
            t0 = time.perf_counter()
            for _ in range(100):
                fn(x, o)
            ts.append(time.perf_counter() - t0)
        return min(ts) / 100 / x.size * 1e9
    out = {}
    for name, bf, lm, x in cases:
        fb, fl = loop(bf), loop(lm)
        b, l = [], []
        for _ in range(3):  # alternating rounds
            b.append(ns(fb, x))
            l.append(ns(fl, x))
        out[name] = (min(b), min(l))
    print(json.dumps(out))
    """
)


def elementary():
    """ns per element of each branch-free function vs numba's math.* (a scalar libm call)."""
    proc = subprocess.run([sys.executable, "-c", ELEMENTARY], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, NUMBA_NUM_THREADS="1"))
    if proc.returncode != 0:
        print("elementary functions: failed (%s)" % (proc.stderr.strip().splitlines() or ["?"])[-1])
        return
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    print("elementary functions in a numba loop, ns per element (one thread, best of 3 alternating rounds x 7):")
    for name, (b, l) in res.items():
        print("  %-6s branch-free %5.2f   math.%-6s %5.2f   (%.1fx)" % (name, b, name, l, l / b))


def residual():
    """Residual networks (issue #14) vs PyTorch autograd: symgrad and PyTorch in alternating rounds, each
    case in its own process (so each peak RSS is its own), one thread (headline) and two."""
    cases = (("chain", DEPTH, BATCH, "tanh chain a_l = a_(l-1) + 0.5 tanh(w_l a_(l-1) + b_l), depth %d, batch %d: all %d "
              "per-sample gradients (symgrad backprop, compiled kernel; PyTorch: one leaf per w_l, b_l, .backward())"
              % (DEPTH, BATCH, 2 * DEPTH)),
             ("dense", 10, 512, "dense, width 256, depth 10, every layer a^l = a^(l-1) + 0.5 tanh(W^l a^(l-1) + b^l), batch 512, "
              "shared weights: the batch-summed dC/dW^l (256 x 256) and dC/db^l of C = sum_batch 1/2|a^L - y|^2 on both sides "
              "(symgrad backprop_shared, which also returns q^l and the per-sample |delta^l|^2; PyTorch autograd)"))
    for name, depth, batch, text in cases:
        print("residual " + text)
        for th in (1, 2):
            rounds = []
            for _ in range(ROUNDS):
                rounds.append({side: run("res-%s-%s:%d" % (name, side, th), depth, batch) for side in ("symgrad", "torch")})
            errs = [r[k]["error"] for r in rounds for k in r if "error" in r[k]]
            if errs:
                print("  %d thread(s): failed (%s)" % (th, errs[0]))
                continue
            s = min((r["symgrad"] for r in rounds), key=lambda x: x["seconds"])
            t = min((r["torch"] for r in rounds), key=lambda x: x["seconds"])
            per = ", ".join("%.2f" % (r["torch"]["seconds"] / r["symgrad"]["seconds"]) for r in rounds)
            print("  %d thread%s: symgrad %.4f s (peak RSS %.0f MB)  PyTorch %.4f s (peak RSS %.0f MB)  ratio %.2f (target >= 1.0; "
                  "per round %s)  max |diff| of dC/dW / max |dC/dW| per layer %.1e"
                  % (th, "" if th == 1 else "s", s["seconds"], s["peak_rss_mb"], t["seconds"], t["peak_rss_mb"],
                     t["seconds"] / s["seconds"], per, t["max_rel_diff"]))
    lg = run("reslog", 100_000, 1, timeout=300)
    if "error" in lg:
        print("depth-100000 residual tanh chain, log space: failed (%s)" % lg["error"])
    else:
        print("depth-100000 residual tanh chain (alpha 0.5), log space: %.2f s, log|dC/db1| = %.6f, every log|dC/dp| finite: %s; "
              "peak RSS %.0f MB" % (lg["seconds"], lg["log_abs_b1"], lg["all_finite"], lg["peak_rss_mb"]))


def main():
    if "--residual" in sys.argv:
        residual()
        return
    if "--elementary" in sys.argv:
        elementary()
        return
    if "--activations" in sys.argv:
        per_activation()
        return
    ls = DEPTH * BATCH
    print("sigmoid chain, depth %d, batch %d, all %d gradients; %d alternating rounds, each best of %d"
          % (DEPTH, BATCH, 2 * DEPTH, ROUNDS, REPEAT))
    rounds = []
    for _ in range(ROUNDS):
        rounds.append({k: run(k, DEPTH, BATCH) for k in ("symgrad", "torch", "symgrad-out", "symgrad-numpy")})
    for k, r in rounds[0].items():
        if "error" in r:
            print("  %s failed: %s" % (k, r["error"]))
    bestof = {k: min((r[k] for r in rounds), key=lambda x: x.get("seconds", math.inf)) for k in rounds[0]}
    s, t, npy, so = bestof["symgrad"], bestof["torch"], bestof["symgrad-numpy"], bestof["symgrad-out"]
    rate_s = ls / s["seconds"]
    print("  (1) symgrad backprop (%s)  %8.4f s  %10.3e layer-samples/s  peak RSS %7.1f MB"
          % (s["backend"], s["seconds"], rate_s, s["peak_rss_mb"]))
    print("      symgrad, out= (caller's memory) %8.4f s  %10.3e layer-samples/s"
          % (so["seconds"], ls / so["seconds"]))
    print("      symgrad, NumPy kernel       %8.4f s  %10.3e layer-samples/s  peak RSS %7.1f MB"
          % (npy["seconds"], ls / npy["seconds"], npy["peak_rss_mb"]))
    if "error" in t:
        print("  (2) PyTorch autograd     unavailable: %s" % t["error"])
    else:
        rate_t = ls / t["seconds"]
        print("  (2) PyTorch autograd             %8.4f s  %10.3e layer-samples/s  peak RSS %7.1f MB  (max rel diff vs symgrad %.1e)"
              % (t["seconds"], rate_t, t["peak_rss_mb"], t["max_rel_diff"]))
        per_round = ["%.2f" % (r["torch"]["seconds"] / r["symgrad"]["seconds"]) for r in rounds]
        per_out = ["%.2f" % (r["torch"]["seconds"] / r["symgrad-out"]["seconds"]) for r in rounds]
        print("  ratio (1)/(2) = %.2f  (target >= 1.0); per round: %s;  with out=: %.2f (per round %s);  NumPy kernel / PyTorch = %.2f"
              % (rate_s / rate_t, ", ".join(per_round), t["seconds"] / so["seconds"], ", ".join(per_out), t["seconds"] / npy["seconds"]))
    fl = run("floor", DEPTH, BATCH)
    if "error" not in fl:
        print("  memory floor: copying every w, b row into two fresh (%d, %d) arrays on 2 threads takes %.4f s"
              % (DEPTH, BATCH, fl["seconds"]))
    print("naive lambdify(sympy.diff(C, p)) for all parameters, same batch:")
    for d in (2, 4, 8):
        n = run("naive", d, BATCH, repeat=1, timeout=120)
        sd = run("symgrad", d, BATCH)
        if "error" in n:
            print("  depth %2d: failed (%s)" % (d, n["error"]))
            continue
        rn, rs = d * BATCH / n["seconds"], d * BATCH / sd["seconds"]
        print("  depth %2d: (3) %8.3f s (+%.2f s diff/lambdify)  %10.3e layer-samples/s  peak RSS %7.1f MB;  symgrad %10.3e;  ratio (1)/(3) = %.1f"
              % (d, n["seconds"], n["setup_seconds"], rn, n["peak_rss_mb"], rs, rs / rn))
    print("  (naive sympy.diff of the composed loss grows exponentially with depth; depth 16+ is impractical, see bench_derivation.py)")
    lg = run("logspace", 100_000, 1, timeout=300)
    if "error" in lg:
        print("depth-100000 log space: failed (%s)" % lg["error"])
    else:
        print("depth-100000 sigmoid chain, log space: %.2f s, log|dC/db1| = %.6f (math.fsum reference %.6f, %.4f per layer); "
              "plain float64 dC/db1 = %r; peak RSS %.1f MB"
              % (lg["seconds"], lg["log_abs_b1"], lg["fsum_reference"], lg["decay_rate_per_layer"], lg["linear_b1"], lg["peak_rss_mb"]))
    dn = run("dense", 4, 1000)
    if "error" in dn:
        print("dense [784, 30, 30, 30, 10]: failed (%s)" % dn["error"])
    else:
        print("dense [784, 30, 30, 30, 10], batch 1000, xavier init: symgrad %.4f s; per-layer ‖δ^l‖ (batch mean)" % dn["seconds"])
        print("  symgrad: %s" % ", ".join("%.4e" % v for v in dn["symgrad_mean_norms"]))
        print("  PyTorch: %s" % ", ".join("%.4e" % v for v in dn["torch_mean_norms"]))
        print("  max relative difference per sample: %.1e" % dn["max_rel_diff"])
    per_activation()
    elementary()
    residual()


if __name__ == "__main__":
    main()
