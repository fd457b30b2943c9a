"""The ``symgrad`` command line.  ``main(argv) -> int`` so tests can call it directly.

Exit codes: 0 success; 1 a check failed (``check`` found a mismatch, ``derive --verify`` a
MISMATCH, ``prove`` a failed theorem); 2 bad input, or a request that cannot be met (one line on
stderr, no traceback); 3 unknown: a symbolic computation ran past its time budget
(``derive --verify`` prints ``unknown (reason)``), so neither a match nor a mismatch was shown.

Numbers and names on the command line are ASCII (``--depth ４`` and ``--weight-scale 1_0`` are
refused, though Python's ``int`` would take them), outputs go to regular files or to stdout
(``-o -``), and magnitudes that compound over depth are computed and printed in log space.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import threading
import time
from contextlib import contextmanager

from symgrad._budget import BudgetExceeded
from symgrad.errors import GradientCheckError, InvalidArgument, SymgradError
from symgrad.numeric.inits import INITS  # sample()'s inits; the module imports nothing (--help stays fast)

__all__ = ["main"]

EXAMPLES = {
    "derive": "example: symgrad derive --depth 4 --activation sigmoid --wrt b1 --verify",
    "latex": "example: symgrad latex --depth 4 --activation sigmoid --wrt b1 -o chain.tex --pdf",
    "bounds": "example: symgrad bounds --activation sigmoid --weight-scale 1.0 --depth 10",
    "check": "example: symgrad check --widths 2,3,1 --activation tanh --batch 8 --init xavier --seed 0",
    "prove": "example: symgrad prove --no-crosscheck",
    "meanfield": "example: symgrad meanfield --activation tanh --sigma-w2 1.5 --sigma-b2 0.05 --depth 50",
    "report": "example: symgrad report --widths 64,32,32,10 --activation sigmoid --output-activation identity --weights w.npz --data batch.npz",
}
#: Largest ``symgrad check --batch`` (each sample is a full network evaluation per finite difference).
MAX_BATCH = 100_000
#: How long a step runs silently before it reports progress on stderr.
PROGRESS_AFTER_S = 1.0
#: Default time budget (seconds) of each symbolic step of ``derive``: deriving and printing the
#: gradient, and ``--verify``.  Past it, the answer is "unknown" (exit 3).
SECONDS = 60.0
#: ``symgrad check`` switches to random directional finite differences (``check_gradients(fast=True)``)
#: when differencing every entry would cost more than this many layer evaluations: each entry
#: needs 8 loss evaluations, each a pass through every layer for every sample.
FAST_ABOVE = 2e8
FAST_DIRECTIONS = 4
#: Exit code of an answer that ran out of budget ("unknown").
EXIT_UNKNOWN = 3


@contextmanager
def _progress(what: str):
    """Say on stderr what is running once it has taken more than ``PROGRESS_AFTER_S``, and
    how long it took; quick steps print nothing."""
    start = time.monotonic()
    shown = threading.Event()

    def announce():
        shown.set()
        print("symgrad: %s ..." % what, file=sys.stderr, flush=True)

    timer = threading.Timer(PROGRESS_AFTER_S, announce)
    timer.daemon = True
    timer.start()
    ok = False
    try:
        yield
        ok = True
    finally:
        timer.cancel()
        timer.join()
        if shown.is_set():
            print("symgrad: %s %s (%.1f s)" % (what, "done" if ok else "stopped", time.monotonic() - start), file=sys.stderr, flush=True)


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad options as InvalidArgument (exit 2, one line) instead of usage dumps."""

    def error(self, message):
        where = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        if message.endswith("expected one argument"):
            # argparse takes '-1' or '-inf' after an option for another option.
            message += "; a value that starts with '-' goes after '=', e.g. --weight-scale=-1"
        raise InvalidArgument("%s%s (see '%s --help')" % (where, message, self.prog))


_INT_RE = re.compile(r"[+-]?[0-9]{1,30}\Z")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,6})?\Z")
_NON_FINITE_RE = re.compile(r"[+-]?(?:nan|inf|infinity)\Z", re.IGNORECASE)


def _show(text: str, limit: int = 40) -> str:
    """``repr`` of a user's string, shortened: messages stay one readable line."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _ascii_problem(text: str) -> str | None:
    """``" contains the non-ASCII character '１' (U+FF11)"`` or None."""
    for ch in text:
        if ord(ch) > 127 or (not ch.isprintable() and ch not in " \t"):
            return " contains the %s character %r (U+%04X)" % ("non-ASCII" if ord(ch) > 127 else "control", ch, ord(ch))
    return None


def _int_option(example: str, what: str, minimum: int, maximum: int | None = None):
    """An argparse type for an int option: one-line messages that say what to pass instead."""

    def parse(text: str) -> int:
        bad = _ascii_problem(text)
        if bad:
            raise argparse.ArgumentTypeError("%s%s; numbers are ASCII digits, %s" % (_show(text), bad, example))
        if not _INT_RE.match(text.strip()):
            raise argparse.ArgumentTypeError("%s is not an integer; pass %s" % (_show(text), example))
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError("%d is not a %s; pass %s" % (value, what, example))
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError("%s %d exceeds the maximum %d" % (example.split()[-2], value, maximum))
        return value

    return parse


_positive_int = _int_option("e.g. --depth 4", "positive depth", 1)
_batch = _int_option("e.g. --batch 8", "positive batch size", 1, MAX_BATCH)
_seed = _int_option("e.g. --seed 0", "non-negative seed", 0)


def _float(text: str, example: str) -> float:
    """A float written in ASCII decimal notation (no ``1_0``, no full-width digits); nan and inf
    are refused as not finite, and so is a literal that overflows (``1e999``)."""
    bad = _ascii_problem(text)
    if bad:
        raise argparse.ArgumentTypeError("%s%s; numbers are ASCII, %s" % (_show(text), bad, example))
    t = text.strip()
    if _NON_FINITE_RE.match(t):
        raise argparse.ArgumentTypeError("%s is not a finite number; pass %s" % (_show(text), example))
    if not _FLOAT_RE.match(t):
        raise argparse.ArgumentTypeError("%s is not a number; pass %s" % (_show(text), example))
    value = float(t)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError("%s is not a finite number (it overflows float64); pass %s" % (_show(text), example))
    return value


def _finite_float(text: str) -> float:
    return _float(text, "e.g. --value 0.5")


def _budget_seconds(text: str) -> float:
    value = _float(text, "e.g. --seconds 60")
    if not value > 0 or value > 86400:
        raise argparse.ArgumentTypeError("%s must be a time budget in seconds, more than 0 and at most 86400; pass e.g. --seconds 60" % _show(text))
    return value


def _name(option: str, example: str):
    """An argparse type for a name option (``--wrt``, ``--loss``): printable ASCII only."""

    def parse(text: str) -> str:
        bad = _ascii_problem(text)
        if bad:
            raise argparse.ArgumentTypeError("%s%s; names are ASCII, %s" % (_show(text), bad, example))
        if len(text) > 1000:
            raise argparse.ArgumentTypeError("%s is %d characters long; pass %s" % (_show(text), len(text), example))
        return text

    return parse




def _init(text: str) -> str:
    key = text.strip().lower()
    if key not in INITS:
        raise argparse.ArgumentTypeError("unknown init %s; known: %s" % (_show(text), ", ".join(INITS)))
    return key


def _weight_scale(text: str) -> float:
    try:
        value = _float(text, "e.g. --weight-scale 1.0 (the typical |w|)")
    except argparse.ArgumentTypeError as exc:
        if "not a finite" in str(exc):
            raise argparse.ArgumentTypeError("%s must be a finite |w| >= 0, e.g. --weight-scale 1.0" % _show(text)) from None
        raise
    if value < 0:
        raise argparse.ArgumentTypeError("%s must be a finite |w| >= 0, e.g. --weight-scale 1.0" % _show(text))
    return value


def _widths(text: str) -> list[int]:
    bad = _ascii_problem(text)
    if bad:
        raise argparse.ArgumentTypeError("%s%s; pass ASCII digits, e.g. --widths 2,3,1" % (_show(text), bad))
    parts = text.split(",")
    if len(parts) > 10_000 or not all(_INT_RE.match(t.strip()) for t in parts):
        raise argparse.ArgumentTypeError("%s is not a comma-separated list of ints; pass e.g. --widths 2,3,1" % _show(text))
    return [int(t) for t in parts]


def _build_network(args):
    from symgrad.symbolic.build import chain, network

    with _progress("building the network"):
        if args.widths is not None:
            return network(args.widths, activation=args.activation, loss=args.loss)
        return chain(_depth(args), activation=args.activation, loss=args.loss)


def _depth(args) -> int:
    """``--depth`` (default 4).  The option's own default is None, so that ``--depth 4 --widths
    2,3,1`` is refused like any other conflict, not silently taken for the default."""
    return 4 if args.depth is None else args.depth


def _gradients(net, wrt: str) -> list:
    names = [w.strip() for w in _split_wrt(wrt)]
    if not names or any(not n for n in names):
        raise InvalidArgument("--wrt %r names no parameter; pass e.g. --wrt b1 or --wrt b1,w2" % wrt)
    return [net.gradient(n) for n in names]


def _split_wrt(text: str) -> list[str]:
    """``b1,W2[1,0]`` → ``['b1', 'W2[1,0]']`` (commas inside brackets belong to the entry)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return out


def _cmd_derive(args) -> int:
    import sympy

    from symgrad._budget import within_budget
    from symgrad.symbolic.networks import MAX_COMPOSE_DEPTH

    if args.verify:
        depth = len(args.widths) - 1 if args.widths is not None else _depth(args)
        if depth > MAX_COMPOSE_DEPTH:
            raise InvalidArgument("--verify composes the whole network, which works up to depth %d (symgrad.symbolic.MAX_COMPOSE_DEPTH), not %d; "
                                  "drop --verify, or check numerically with 'symgrad check'" % (MAX_COMPOSE_DEPTH, depth))
    seconds = SECONDS if args.seconds is None else args.seconds
    net = _build_network(args)
    wrt = args.wrt.strip()

    def render():
        grad = net.gradient(wrt)
        if args.format == "latex":
            return grad, grad.latex()
        if args.format == "srepr":
            return grad, sympy.srepr(grad.expr)
        lines = ["%r" % net, "dC/d%s = %s" % (wrt, sympy.sstr(grad.expr, order="none")), "factors (chain order):"]
        lines += ["  %s" % sympy.sstr(f, order="none") for f in grad.factors]
        return grad, "\n".join(lines)

    with _progress("deriving and printing dC/d%s (budget %g s)" % (wrt, seconds)):
        grad, text = within_budget(render, seconds=seconds, what="deriving and printing dC/d%s" % wrt)
    print(text)
    if args.verify:
        from symgrad.symbolic.verify import verify_gradient

        with _progress("verifying against sympy.diff of the composed loss (budget %g s)" % seconds):
            result = verify_gradient(net, grad, seconds=seconds)
        word = {"exact match": "exact match", "mismatch": "MISMATCH", "unknown": "unknown"}[result.status]
        print("verified against sympy.diff of the composed loss: %s (%s)" % (word, result.reason))
        return {"exact match": 0, "mismatch": 1, "unknown": EXIT_UNKNOWN}[result.status]
    return 0


def _cmd_latex(args) -> int:
    from symgrad.render import latex
    from symgrad._io import write_atomic

    to_stdout = args.output is None or args.output == "-"
    if args.pdf and to_stdout:
        raise InvalidArgument("--pdf needs -o FILE.tex (the PDF is written next to it), not stdout; e.g. -o chain.tex --pdf")
    if args.pdf and args.fragment:
        raise InvalidArgument("--pdf and --fragment conflict: a fragment is pasted into a document, it does not compile on its own; drop one")
    if to_stdout and args.force:
        raise InvalidArgument("--force only applies to -o FILE.tex; stdout is never refused")
    if not to_stdout and (not args.output.strip() or any(not ch.isprintable() for ch in args.output)
                          or os.path.basename(args.output) in ("", ".", "..")):
        raise InvalidArgument("-o %s: give a file name such as chain.tex, or - for stdout" % _show(args.output))
    if not to_stdout and args.output.lower().endswith(".pdf"):
        raise InvalidArgument("-o %s: give the .tex path (e.g. -o chain.tex) and add --pdf for the PDF" % args.output)
    if args.pdf and not latex.pdflatex_available():
        raise InvalidArgument("--pdf: pdflatex not found; install it with 'apt-get install --no-install-recommends %s'" % " ".join(latex.PDFLATEX_PACKAGES))
    from symgrad._budget import within_budget

    net = _build_network(args)
    seconds = SECONDS if args.seconds is None else args.seconds

    def write():
        grads = _gradients(net, args.wrt)
        if args.fragment:
            return "\n\n".join(latex.derivation(g, full=args.full) for g in grads)
        return latex.document(grads, title=args.title, full=args.full)

    with _progress("deriving and writing the derivation (budget %g s)" % seconds):
        text = within_budget(write, seconds=seconds, what="deriving and writing the LaTeX derivation")
    if to_stdout:
        sys.stdout.write(text)
        return 0
    if args.fragment:
        from symgrad._io import MARKER

        text = "%s -- LaTeX fragment; needs \\usepackage{amsmath,amssymb}\n%s" % (MARKER, text)
    from pathlib import Path

    pdf_path = Path(args.output).with_suffix(".pdf")
    if args.pdf:
        # Check the PDF's destination before writing anything, so a refusal leaves no half-done output.
        from symgrad._io import _check_destination

        _check_destination(pdf_path, args.force)
    write_atomic(args.output, text, force=args.force)
    print("wrote %s" % args.output, file=sys.stderr)
    if args.pdf:
        with _progress("compiling %s with pdflatex" % args.output):
            try:
                latex.compile_pdf(args.output, pdf_path=pdf_path, force=args.force, strict=False)
            except latex.LatexError as exc:
                print("symgrad: error: %s" % exc, file=sys.stderr)
                return 1
        print("wrote %s" % pdf_path, file=sys.stderr)
    return 0


def _check_names(net, wrt: str | None) -> list[str]:
    """The parameters ``--wrt`` names (all of them by default), validated, in order, without repeats."""
    if wrt is None:
        return list(net.parameters)
    names = [w.strip() for w in _split_wrt(wrt)]
    if not names or any(not n for n in names):
        raise InvalidArgument("--wrt %r names no parameter; pass e.g. --wrt b1 or --wrt b1,w2" % wrt)
    out = []
    for n in names:
        if n not in net.parameters:
            entry = "" if "[" not in n else " (check compares whole parameters; pass %s)" % n.split("[", 1)[0]
            raise InvalidArgument("--wrt: unknown parameter %r%s; known: %s" % (n, entry, ", ".join(net.parameters)))
        if n not in out:
            out.append(n)
    return out


def _cmd_check(args) -> int:
    import numpy as np

    from symgrad.testing.gradcheck import TOLERANCES, check_gradients
    from symgrad.numeric import sample

    if args.init == "constant" and args.value is None:
        raise InvalidArgument("--init constant needs --value, e.g. --init constant --value 0.5")
    if args.value is not None and args.init != "constant":
        raise InvalidArgument("--value %g is only used with --init constant" % args.value)
    net = _build_network(args)
    names = _check_names(net, args.wrt)
    with _progress("sampling %d parameter sets (init %s, seed %d)" % (args.batch, args.init, args.seed)):
        params = sample(net, args.batch, init=args.init, seed=args.seed, value=args.value)
    tol = TOLERANCES[np.dtype(np.float64)]
    # One check for every parameter (a chain's closed forms share their factors: O(L), where
    # one call per parameter was O(L²)); the rows come from its per-parameter details.
    entries = sum(int(np.prod(net.shape(n))) if hasattr(net, "shape") and n != "a0" else 1 for n in names)
    layer_cost = sum(net.widths[l] * net.widths[l + 1] for l in range(net.depth)) if hasattr(net, "widths") else net.depth
    fast = args.fast or 8.0 * entries * layer_cost * args.batch > FAST_ABOVE
    how = ("along %d random directions (fast mode%s)" % (FAST_DIRECTIONS, "" if args.fast else ": every entry would take %.1e layer "
           "evaluations; pass --wrt to difference chosen parameters entry by entry" % (8.0 * entries * layer_cost * args.batch))
           if fast else "entry by entry")
    with _progress("checking %d gradient(s): closed form vs backprop vs finite differences %s" % (len(names), how)):
        report = check_gradients(net, params, wrt=names, fast=fast, directions=FAST_DIRECTIONS, seed=args.seed,
                                 raise_on_failure=False)
    scale = tol.atol / tol.rtol
    rows, failures = [], list(report.failures)

    def rel(kind, name):
        d = report.details.get((kind, name))
        if d is None:
            return 0.0, True
        with np.errstate(all="ignore"):
            r = np.abs(d["value"] - d["closed_form"]) / (np.abs(d["closed_form"]) + scale)
        r = r[np.isfinite(r)]
        return (float(r.max()) if r.size else 0.0), not bool(np.any(d["failed"]))

    for name in names:
        cf = report.details[("backprop", name)]["closed_form"]
        (rel_bp, ok_bp), (rel_fd, ok_fd) = rel("backprop", name), rel("finite_difference", name)
        rows.append((name, float(np.max(np.abs(cf))), rel_bp, rel_fd, ok_bp and ok_fd))
    print("%r, batch %d, init %s, seed %d" % (net, args.batch, args.init, args.seed))
    print("finite differences %s" % how)
    print("tolerances from an error model (symgrad.testing.gradcheck): closed form vs backprop within twice a running rounding bound; "
          "vs finite differences (float64, Richardson extrapolation over h, h/2, h/4, h/8 with h = %g*max(1, |p|)) within their "
          "truncation estimate plus rounding bound; relative error shown as |x - closed form| / (|closed form| + %g)"
          % (tol.eps, tol.atol / tol.rtol))
    width = max(len("parameter"), *(len(r[0]) for r in rows))
    print("%-*s  %17s  %20s  %26s  %s" % (width, "parameter", "max |closed form|", "rel err vs backprop", "rel err vs finite diff", "result"))
    for name, mag, rel_bp, rel_fd, ok in rows:
        print("%-*s  %17.3e  %20.2e  %26.2e  %s" % (width, name, mag, rel_bp, rel_fd, "PASS" if ok else "FAIL"))
    bad = [r[0] for r in rows if not r[4]]
    if not bad:
        print("all %d parameter(s) pass" % len(rows))
        return 0
    print("%d of %d parameter(s) FAIL: %s" % (len(bad), len(rows), ", ".join(bad)))
    shown = failures[:10] + (["... and %d more" % (len(failures) - 10)] if len(failures) > 10 else [])
    raise GradientCheckError("gradient check failed for %d comparison(s):\n  %s" % (len(failures), "\n  ".join(shown)))


def _bounds_facts(act, scale: float, depth: int) -> dict:
    """The facts that ``symgrad bounds`` prints, from :func:`symgrad.theory.worst_case.chain_bound`
    (which classifies; this only formats).  Magnitudes are strings such as ``"1.2e+600"`` (so that
    JSON stays valid where float64 would overflow), next to ``log10_per_layer_factor`` and
    ``log10_factor_over_depth`` (numbers; null where the magnitude is 0)."""
    import sympy

    from symgrad.theory.worst_case import chain_bound

    b = chain_bound(act, scale, depth)
    facts = {
        "activation": act.name,
        "phi": sympy.sstr(act.expr),
        "phi_prime": sympy.sstr(act.derivative),
        "sup_abs_phi_prime": None if b.sup is None else sympy.sstr(b.sup),
        "sup_exact": b.sup_exact,
        "attained_at": None if b.attained_at is None else _fmt_set(b.attained_at),
        "range_phi_prime": None if b.range is None else _fmt_set(b.range),
        "note": b.note,
        "weight_scale": scale,
        "depth": depth,
    }
    if b.log10_per_layer_factor is None:  # unknown or unbounded: no factor at all
        facts.update(regime=b.regime, per_layer_factor=None, why=b.why)
        return facts
    lg, lg_depth = b.log10_per_layer_factor, b.log10_factor_over_depth
    facts.update(regime=b.regime, why=b.why,
                 per_layer_factor=b.per_layer_factor, log10_per_layer_factor=None if lg == -math.inf else lg,
                 factor_over_depth=b.factor_over_depth, log10_factor_over_depth=None if lg_depth == -math.inf else lg_depth)
    return facts


def _fmt_set(s) -> str:
    """``(0, 1/4]``, ``{0, 1}``, ``R`` instead of SymPy's ``Interval.Lopen(0, 1/4)``."""
    import sympy

    if s is sympy.S.Reals:
        return "all real z"
    if s is sympy.S.EmptySet:
        return "EmptySet"
    if isinstance(s, sympy.Interval):
        return "%s%s, %s%s" % ("(" if s.left_open else "[", sympy.sstr(s.start), sympy.sstr(s.end), ")" if s.right_open else "]")
    if isinstance(s, sympy.FiniteSet):
        return "{%s}" % ", ".join(sympy.sstr(e) for e in s.args)
    if isinstance(s, sympy.Union):
        return " U ".join(_fmt_set(a) for a in s.args)
    return sympy.sstr(s)


def _cmd_bounds(args) -> int:
    import json

    from symgrad.spec.activations import activation

    act = activation(args.activation)
    with _progress("finding sup|phi'| of %s" % act.name):
        facts = _bounds_facts(act, args.weight_scale, args.depth)
    with _progress("measuring the typical growth rate of %s" % act.name):
        typical = _typical_facts(act, args.weight_scale, args.depth)
    if args.json:
        print(json.dumps(dict(facts, typical=typical), indent=2, allow_nan=False))
        return 0
    _print_worst_case(args, facts)
    _print_typical(facts, typical, args.depth)
    return 0


def _print_worst_case(args, facts: dict) -> None:
    print("activation      %s" % facts["activation"])
    print("phi(z)          %s" % facts["phi"])
    print("phi'(z)         %s" % facts["phi_prime"])
    if facts["sup_abs_phi_prime"] is None:
        print("sup |phi'|      unknown (%s)" % facts["note"])
        print("regime          unknown: no bound on |phi'| is known")
        return
    print("sup |phi'|      %s%s" % (facts["sup_abs_phi_prime"], "" if facts["sup_exact"] else " (certified numerically)"))
    print("attained at     %s" % (facts["attained_at"] if facts["attained_at"] not in (None, "EmptySet") else "nowhere (only approached)" if facts["attained_at"] == "EmptySet" else "unknown"))
    print("range of phi'   %s" % (facts["range_phi_prime"] or "unknown"))
    if facts["per_layer_factor"] is None:
        print("regime          %s: %s" % (facts["regime"], facts["why"]))
        return
    print("per-layer factor |w| * sup|phi'| = %g * %s = %s" % (args.weight_scale, facts["sup_abs_phi_prime"], facts["per_layer_factor"]))
    print("regime          %s: %s" % (facts["regime"], facts["why"]))
    print("over %d layers  bound factor %s" % (args.depth, facts["factor_over_depth"]))


def _typical_facts(act, scale: float, depth: int) -> dict | None:
    """The typical case of ``symgrad bounds``: the chain's growth rate λ = E log|w φ'(z)| with w ~
    N(0, W²), b ~ N(0, 1) (W = ``--weight-scale``; W = 1 is Nielsen's init), by Monte Carlo over
    TYPICAL_SAMPLES chains × TYPICAL_LAYERS layers (99% CI), from
    :func:`symgrad.theory.meanfield.growth_rate`.  None at W = 0 (no random weights to draw)."""
    from symgrad.theory.meanfield import growth_rate

    if scale == 0:
        return None
    if act.bound.sup is None or not math.isfinite(float(act.bound.sup)):
        return {"skipped": "no bound on |phi'| is known, so the chain may overflow float64"}
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            g = growth_rate(act, (scale * scale, 1.0), samples=TYPICAL_SAMPLES, layers=TYPICAL_LAYERS, burn_in=TYPICAL_BURN_IN, seed=0)
    except (InvalidArgument, RuntimeWarning, ArithmeticError) as exc:
        return {"skipped": _one_line(exc)}

    def ex(x):
        return None if not math.isfinite(x) else math.exp(x)

    return {
        "init": "w ~ N(0, %g^2), b ~ N(0, 1)" % scale,
        "growth_rate": None if not math.isfinite(g.rate) else g.rate,
        "growth_rate_ci": None if not math.isfinite(g.ci[0]) else list(g.ci),
        "per_layer_factor": ex(g.rate), "per_layer_factor_ci": None if not math.isfinite(g.ci[0]) else [math.exp(g.ci[0]), math.exp(g.ci[1])],
        "two_layer_factor": ex(2 * g.rate),
        "worst_case_rate_same_weights": g.worst_case,
        "samples": g.samples, "note": g.note,
    }


#: ``symgrad bounds``'s Monte-Carlo size for the typical case (chains, layers, burn-in): about 0.05 s.
TYPICAL_SAMPLES, TYPICAL_LAYERS, TYPICAL_BURN_IN = 2000, 100, 30


def _print_typical(facts: dict, t: dict | None, depth: int) -> None:
    if t is None:
        print("typical case    none: --weight-scale 0 draws no random weights")
        return
    if "skipped" in t:
        print("typical case    not computed: %s" % t["skipped"])
        return
    print("typical case    %s, Monte Carlo over %d chain-layers (99%% CI)" % (t["init"], t["samples"]))
    if t["growth_rate"] is None:
        print("growth rate     lambda = -inf: %s" % t["note"])
        return
    lo, hi = t["growth_rate_ci"]
    print("growth rate     lambda = E log|w phi'(z)| = %.4f  [%.4f, %.4f] per layer" % (t["growth_rate"], lo, hi))
    plo, phi_ = t["per_layer_factor_ci"]
    worst = facts.get("per_layer_factor")
    print("typical factor  e^lambda = %.4g  [%.4g, %.4g] per layer%s" % (
        t["per_layer_factor"], plo, phi_, "" if worst is None else "   (worst case |w| * sup|phi'| = %s)" % worst))
    lg = facts.get("log10_per_layer_factor")
    two = "" if lg is None else "   (worst case %s)" % _format_log10(2 * lg)
    print("two layers      e^(2 lambda) = %.4g%s" % (t["two_layer_factor"], two))
    print("over %d layers  typical factor e^(%d lambda) = %s" % (depth, depth, _format_log10(depth * t["growth_rate"] / math.log(10))))


def _format_log10(lg: float) -> str:
    from symgrad.theory.worst_case import format_log10

    return format_log10(lg)


# --- meanfield -----------------------------------------------------------------------------------


def _variance_option(option: str):
    def parse(text: str) -> float:
        value = _float(text, "e.g. %s 1.0" % option)
        if value < 0:
            raise argparse.ArgumentTypeError("%s must be a variance >= 0, e.g. %s 1.0" % (_show(text), option))
        return value

    return parse


def _mf_value(v) -> dict:
    """One :class:`~symgrad.theory.meanfield.MeanFieldValue` as JSON: ``value`` (float, null where
    infinite), ``error`` (0 when exact, null where unbounded), ``exact`` (SymPy's string, or null)
    and ``text`` (as printed)."""
    import sympy

    return {
        "value": v.value if math.isfinite(v.value) else None,
        "error": v.error if math.isfinite(v.error) else None,
        "exact": None if v.exact is None else sympy.sstr(v.exact),
        "text": _mf_text(v),
    }


def _mf_text(v, *, critical: bool = False) -> str:
    """``1``, ``1/log(2) = 1.442695041``, ``≈ 0.9998 ± 2e-12`` or ``∞ (critical)``."""
    import sympy

    if not math.isfinite(v.value):
        return "∞ (critical)" if critical or v.value > 0 else "0"
    if v.exact is not None:
        s = sympy.sstr(v.exact)
        if len(s) > 40:
            return "%.10g (exact, a long closed form)" % v.value
        if v.exact.is_Rational:
            return s
        return "%s = %.10g" % (s, v.value)
    return "≈ %.10g ± %.2g" % (v.value, v.error)


def _meanfield_facts(act, w2: float, b2: float, depth: int) -> dict:
    from symgrad.theory import meanfield as mf

    fp = mf.q_star(act, w2, b2)
    c1 = mf.chi1(act, w2, b2)
    xi = mf.gradient_depth_scale(act, w2, b2)
    ratio = mf.predicted_gradient_ratio(act, w2, b2, depth)
    try:
        crit = mf.critical_sigma_w2(act, b2)
        crit_note = ""
    except InvalidArgument as exc:
        crit, crit_note = None, _one_line(exc)
    r = _mf_value(ratio)
    lg = (depth - 1) * math.log10(c1.value) if c1.value > 0 else None
    r["log10"] = lg
    if r["value"] is None or r["value"] == 0.0:
        r["text"] = "10^%.6g" % lg if lg is not None else "0"
    facts = {
        "activation": act.name, "sigma_w2": w2, "sigma_b2": b2, "depth": depth,
        "q_star": _mf_value(fp.q),
        "chi1": _mf_value(c1),
        "xi_grad": _mf_value(xi),
        "phase": mf.phase(act, w2, b2),
        "critical_sigma_w2": None if crit is None else _mf_value(crit),
        "predicted_ratio": r,
    }
    if not math.isfinite(xi.value):
        facts["xi_grad"]["text"] = "∞ (critical)"
    if crit is None:
        facts["critical_sigma_w2_note"] = crit_note
    return facts


def _cmd_meanfield(args) -> int:
    import json

    from symgrad.spec.activations import activation

    if args.json and args.format == "latex":
        raise InvalidArgument("--json and --format latex conflict; drop one")
    if args.output is not None and args.format != "latex":
        raise InvalidArgument("-o %s: only --format latex writes a file; add --format latex" % _show(args.output))
    if args.force and args.output in (None, "-"):
        raise InvalidArgument("--force only applies to --format latex -o FILE.tex")
    act = activation(args.activation)
    monte = None
    if args.monte_carlo:
        try:
            from symgrad.theory import montecarlo
        except ImportError:
            raise InvalidArgument("--monte-carlo: not available (symgrad.theory.montecarlo is missing from this installation)") from None
    if args.format == "latex":
        return _write_meanfield_latex(args, act)
    with _progress("mean field of %s" % act.name):
        facts = _meanfield_facts(act, args.sigma_w2, args.sigma_b2, args.depth)
    if args.monte_carlo:
        with _progress("Monte-Carlo check of a wide network (depth %d)" % args.depth):
            monte = montecarlo.check_wide_network(act, args.sigma_w2, args.sigma_b2, depth=args.depth)
        facts["monte_carlo"] = {"ok": bool(monte.ok), "width": monte.width, "depth": monte.depth, "batch": monte.batch,
                                "summary": monte.summary()}
    if args.json:
        print(json.dumps(facts, indent=2, allow_nan=False, ensure_ascii=False))
    else:
        print("activation      %s" % facts["activation"])
        print("sigma_w2        %g" % args.sigma_w2)
        print("sigma_b2        %g" % args.sigma_b2)
        print("q*              %s" % facts["q_star"]["text"])
        print("chi1            %s" % facts["chi1"]["text"])
        print("xi_grad         %s%s" % (facts["xi_grad"]["text"], "" if facts["xi_grad"]["value"] is None else " layers"))
        print("phase           %s" % facts["phase"])
        print("gradient ratio  E|delta^1|^2 / E|delta^L|^2 = chi1^(L-1) = %s over L = %d layers" % (facts["predicted_ratio"]["text"], args.depth))
        c = facts["critical_sigma_w2"]
        print("critical sigma_w2 at this sigma_b2  %s" % (c["text"] if c is not None else "none (%s)" % facts["critical_sigma_w2_note"]))
        if monte is not None:
            print(monte.summary())
    return 0 if monte is None or monte.ok else 1


def _load_batch(path: str, n_in: int, n_out: int):
    """``--data FILE.npz``: arrays ``inputs`` (B, n0) and ``targets`` (B, nL) (or ``a0`` and ``y``),
    read as the weights are (:mod:`symgrad.interop.weights`: never unpickled)."""
    from symgrad.interop.weights import read_npz

    arrays = read_npz(path, what="--data file")
    xk = "inputs" if "inputs" in arrays else "a0" if "a0" in arrays else None
    yk = "targets" if "targets" in arrays else "y" if "y" in arrays else None
    if xk is None or yk is None:
        raise InvalidArgument("--data %s has arrays %s; expected 'inputs' (batch, %d) and 'targets' (batch, %d)"
                              % (_show(path), sorted(arrays)[:10], n_in, n_out))
    return arrays[xk], arrays[yk]


def _cmd_report(args) -> int:
    import numpy as np

    from symgrad.diagnosis.report import report
    from symgrad.numeric.sampling import sample
    from symgrad.symbolic.build import network

    if args.output is not None and args.format != "latex":
        raise InvalidArgument("-o %s: only --format latex writes a file; add --format latex (text and JSON go to stdout)" % _show(args.output))
    if args.force and args.output in (None, "-"):
        raise InvalidArgument("--force only applies to --format latex -o FILE.tex")
    if args.widths is None:
        if args.weights is None:
            raise InvalidArgument("give --widths n0,...,nL, or --weights FILE whose layer shapes imply them")
        from symgrad.interop.weights import weight_widths

        args.widths = weight_widths(args.weights)
    if len(args.widths) < 2 or any(w < 1 for w in args.widths):
        raise InvalidArgument("--widths %s: give at least two positive widths, e.g. --widths 64,32,10" % ",".join(map(str, args.widths)))
    L = len(args.widths) - 1
    acts = [args.activation] * (L - 1) + [args.output_activation or args.activation]
    net = network(args.widths, activation=acts, loss=args.loss, residual=_residual_layers(args.residual, args.widths))
    if args.weights is not None:
        from symgrad.interop.weights import load_weights

        params = dict(load_weights(args.weights, net))
    else:
        params = sample(net, init=args.init, seed=args.seed)
    if args.data is not None:
        if args.batch is not None:
            raise InvalidArgument("--batch and --data conflict: the batch is the data file's; drop --batch")
        x, y = _load_batch(args.data, args.widths[0], args.widths[-1])
    else:
        rng = np.random.default_rng(args.seed)
        B = 256 if args.batch is None else args.batch
        x = rng.standard_normal((B, args.widths[0]))
        y = rng.uniform(size=(B, args.widths[-1]))
    with _progress("gradient-flow report of %r" % (net,)):
        rep = report(net, params, inputs=x, targets=y, threshold=args.threshold)
    if args.format == "json":
        print(rep.to_json())
    elif args.format == "latex":
        from symgrad.render.report import report_latex

        text = report_latex(rep)
        if args.output is None or args.output == "-":
            sys.stdout.write(text)
        else:
            from symgrad._io import write_atomic

            write_atomic(args.output, text, force=args.force)
            print("wrote %s" % args.output, file=sys.stderr)
    else:
        print(rep)
    return 0


def _residual_layers(spec, widths):
    """``--residual``: one α for every hidden layer that keeps its width (the others and the output
    layer plain), or a comma list with one entry per layer, ``none`` for a plain layer."""
    if spec is None:
        return None
    L = len(widths) - 1
    parts = [t.strip() for t in spec.split(",")]

    def number(t, example):
        try:
            return _float(t, example)
        except argparse.ArgumentTypeError as exc:
            raise InvalidArgument("--residual: %s" % exc) from None

    if len(parts) == 1:
        a = number(parts[0], "e.g. --residual 0.5")
        return [a if (l < L and widths[l] == widths[l - 1]) else None for l in range(1, L + 1)]
    if len(parts) != L:
        raise InvalidArgument("--residual %s has %d entries for %d layers; give one α, or one entry per layer (none for plain)"
                              % (_show(spec), len(parts), L))
    return [None if t.lower() == "none" else number(t, "e.g. --residual none,0.5,none") for t in parts]


def _threshold(text: str) -> float:
    value = _float(text, "e.g. --threshold 10")
    if not value > 1:
        raise argparse.ArgumentTypeError("%s must be a factor above 1; pass e.g. --threshold 10" % _show(text))
    return value


def _write_meanfield_latex(args, act) -> int:
    from symgrad._io import write_atomic
    from symgrad.render.meanfield import meanfield_latex

    to_stdout = args.output is None or args.output == "-"
    if not to_stdout and (not args.output.strip() or any(not ch.isprintable() for ch in args.output)
                          or os.path.basename(args.output) in ("", ".", "..")):
        raise InvalidArgument("-o %s: give a file name such as meanfield.tex, or - for stdout" % _show(args.output))
    with _progress("writing the mean-field derivation"):
        text = meanfield_latex(act, args.sigma_w2, args.sigma_b2, args.depth)
    if to_stdout:
        sys.stdout.write(text)
        return 0
    write_atomic(args.output, text, force=args.force)
    print("wrote %s" % args.output, file=sys.stderr)
    return 0


def _add_network_options(p, *, wrt_help: str, wrt_default: str | None = "b1") -> None:
    net = p.add_mutually_exclusive_group()
    # default None, not 4: argparse takes a value equal to the default for "not given", so
    # '--depth 4 --widths 2,3,1' would slip past the exclusive group.
    net.add_argument("--depth", type=_positive_int, default=None, help="depth of a single-neuron chain (default 4)")
    net.add_argument("--widths", type=_widths, help="widths of a dense network, e.g. 2,3,1")
    p.add_argument("--activation", default="sigmoid", help="built-in name or an expression in z, e.g. 'z*sigmoid(z)'")
    p.add_argument("--loss", type=_name("--loss", "e.g. --loss quadratic"), default="quadratic", help="quadratic or cross_entropy")
    p.add_argument("--wrt", type=_name("--wrt", "e.g. --wrt b1"), default=wrt_default, help=wrt_help)


def _cmd_prove(args) -> int:
    from symgrad.proof import catalogue

    if args.write is not None and not os.path.isdir(args.write):
        raise InvalidArgument("--write %s: no such directory; create it first" % args.write)
    if args.write is not None:
        catalogue.check_write_targets(args.write, force=args.force)  # refuse before the proofs run, not after
    if args.readme is not None:
        catalogue.check_readme(args.readme)  # a FIFO, a device or a README without the block: refused first
    results = catalogue.run(verbose=True, crosscheck=not args.no_crosscheck)
    failed = [r for r in results if r.status == "failed"]
    unknown = [r for r in results if r.status == "unknown"]  # a step ran past its budget: neither proved nor refuted
    assuming = [r for r in results if r.checked and not r.proved]  # rests on givens or stated rules
    print(catalogue.summary(results))
    if args.write is not None:
        for path in catalogue.write_latex(args.write, results, force=args.force):
            print("wrote %s" % path)
    if args.readme is not None:
        print("updated %s" % catalogue.update_readme(args.readme, results))
    if failed or (args.strict and assuming):
        return 1
    return EXIT_UNKNOWN if unknown else 0


def _cmd_plot(args) -> int:
    """``symgrad plot KIND ... -o FILE.{png,pdf,svg}``: the figure of :mod:`symgrad.render.plots`, written atomically."""
    from symgrad.render import plots

    if args.output is None or args.output == "-" or not args.output.strip() or any(not ch.isprintable() for ch in args.output):
        raise InvalidArgument("plot: give -o FILE.png, FILE.pdf or FILE.svg (figures are not written to stdout)")
    names = ("activation", "z", "points", "saturation", "depth", "widths", "residual", "loss", "init", "samples", "batch", "seed",
             "sigma_w2", "sigma_b2", "monte_carlo", "w", "data", "title")
    with _progress("drawing the %s figure" % args.kind):
        fig = plots.plot_command(args.kind, {k: getattr(args, k) for k in names})
        path = plots.write_figure(fig, args.output, force=args.force)
    print("wrote %s" % path, file=sys.stderr)
    return 0


def _cmd_experiment(args) -> int:
    """``symgrad experiment speed-of-learning``: Nielsen's experiment on the digits (symgrad.experiments.speed)."""
    import json

    from symgrad.experiments import speed

    plots = None
    if args.output is not None:  # check -o and matplotlib before training, not after
        from symgrad.render import plots

        out = args.output
        if out == "-" or any(not ch.isprintable() for ch in out) or os.path.splitext(out)[1].lower() not in (".png", ".pdf", ".svg"):
            raise InvalidArgument("-o %s: give FILE.png, FILE.pdf or FILE.svg for the figure (the table goes to stdout)" % _show(out))
        if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
            raise InvalidArgument("-o %s: its directory does not exist" % _show(out))
        from symgrad._io import is_symgrad_file

        if os.path.lexists(out) and not args.force and not is_symgrad_file(out):
            raise InvalidArgument("-o %s exists and symgrad did not write it; pass --force to overwrite it" % _show(out))
        plots._figure_class()  # matplotlib missing: InvalidArgument naming the install command
    res = speed.speed_of_learning(speed.NETWORKS if args.networks is None else args.networks, activation=args.activation,
                                  init=args.init, residual=args.residual, epochs=args.epochs, eta=args.eta,
                                  batch_size=args.batch_size, eval_size=args.eval_size, seed=args.seed, progress=True)
    print(json.dumps(res.as_dict(), indent=1) if args.json else res.table())
    if plots is not None:
        path = plots.write_figure(plots.speed_of_learning_figure(res.figure_norms(), title=res.figure_title()), args.output, force=args.force)
        print("wrote %s" % path, file=sys.stderr)
    return 0


def _cmd_sweep(args) -> int:
    """``symgrad sweep``: a grid of Monte-Carlo checks of mean field on Dask (symgrad.sweep), resumable."""
    from symgrad import sweep

    if args.output is None or args.output == "-" or not args.output.strip() or any(not ch.isprintable() for ch in args.output):
        raise InvalidArgument("sweep: give -o FILE.csv (or FILE.parquet): the table is also the checkpoint that a rerun resumes from")
    if args.scheduler is not None and args.workers is not None:
        raise InvalidArgument("--workers starts a local cluster and --scheduler connects to one; give only one")
    acts = [a.strip() for a in args.activation.split(",")]
    points = sweep.grid(acts, sweep.parse_grid("--sigma-w2", args.sigma_w2), sweep.parse_grid("--sigma-b2", args.sigma_b2),
                        sweep.parse_grid("--depth", args.depth, integer=True), width=args.width, batch=args.batch,
                        repeats=args.repeats, level=args.level)
    rows = sweep.run_sweep(points, args.output, seed=args.seed, workers=2 if args.workers is None else args.workers,
                           scheduler=args.scheduler, timeout=args.timeout, progress=True)
    n = {v: sum(r["ok"] == v for r in rows) for v in ("True", "False", "")}
    print("wrote %s: %d points; mean field within its interval at %d, outside at %d, not computed at %d (see 'error')"
          % (args.output, len(rows), n["True"], n["False"], n[""]))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="symgrad", description="Verified gradient-flow analysis: closed-form gradient chains of deep networks.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    raw = argparse.RawDescriptionHelpFormatter
    d = sub.add_parser("derive", help="derive the closed-form gradient of one parameter", epilog=EXAMPLES["derive"], formatter_class=raw)
    _add_network_options(d, wrt_help="parameter name, e.g. b1, w3, W2, 'W2[1,0]'")
    d.add_argument("--format", choices=("text", "latex", "srepr"), default="text", help="text (default), latex or sympy srepr")
    d.add_argument("--verify", action="store_true",
                   help="check the closed form exactly against sympy.diff of the composed loss (depth <= 64); "
                        "exit 0 exact match, 1 MISMATCH, 3 unknown (ran past --seconds)")
    d.add_argument("--seconds", type=_budget_seconds, metavar="S",
                   help="time budget of each step, deriving and printing, then --verify (default %g); past it: exit 3" % SECONDS)
    d.set_defaults(func=_cmd_derive)

    t = sub.add_parser("latex", help="write the derivation as a LaTeX document (and PDF)", epilog=EXAMPLES["latex"], formatter_class=raw,
                       description="Write the chain rule, local derivatives, closed form, product form and bound as LaTeX.")
    _add_network_options(t, wrt_help="parameter name(s), comma-separated, e.g. b1 or b1,w2")
    t.add_argument("-o", "--output", metavar="FILE.tex", help="write to this regular file (atomically); - or no -o: stdout")
    t.add_argument("--pdf", action="store_true", help="also compile FILE.pdf with pdflatex (needs -o)")
    t.add_argument("--force", action="store_true", help="overwrite files that symgrad did not write")
    t.add_argument("--fragment", action="store_true", help="write a fragment to paste into a document, not a standalone file")
    t.add_argument("--full", action="store_true", help="write every layer of deep chains instead of eliding the middle")
    t.add_argument("--title", default="Gradient derivations", help="document title (plain text: escaped, non-ASCII transliterated)")
    t.add_argument("--seconds", type=_budget_seconds, metavar="S",
                   help="time budget for deriving and writing the document (default %g); past it: exit 3" % SECONDS)
    t.set_defaults(func=_cmd_latex)

    c = sub.add_parser("check", help="check the closed forms numerically against backprop and finite differences",
                       epilog=EXAMPLES["check"], formatter_class=raw,
                       description="Sample parameters and compare each parameter's closed-form gradient with backprop\n"
                                   "and central finite differences.  Prints one row per parameter; exits 1 on a mismatch.")
    _add_network_options(c, wrt_help="parameter name(s) to check, comma-separated, e.g. b1,w2 (default: all)", wrt_default=None)
    c.add_argument("--batch", type=_batch, default=8, metavar="B", help="independent parameter samples (default 8)")
    c.add_argument("--init", type=_init, default="normal", metavar="INIT", help="weight init: %s (default normal)" % ", ".join(INITS))
    c.add_argument("--value", type=_finite_float, metavar="X", help="every weight and bias, with --init constant")
    c.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    c.add_argument("--fast", action="store_true",
                   help="finite differences along %d random directions instead of every entry (chosen by itself when "
                        "every entry would take more than about %.0e layer evaluations)" % (FAST_DIRECTIONS, FAST_ABOVE))
    c.set_defaults(func=_cmd_check)

    pr = sub.add_parser("prove", help="run the proof catalogue: each theorem proved or failed", epilog=EXAMPLES["prove"], formatter_class=raw,
                        description="Prove every theorem of the catalogue (symgrad/catalogue.py) step by step, each step checked\n"
                                    "exactly; print one line per theorem with the failing step, if any, and the numeric cross-check.\n"
                                    "A theorem is 'proved' only when it rests on nothing unchecked; otherwise its line says\n"
                                    "'proved assuming N given(s) and M stated rule(s)' and names them.  Exit 1 if a step fails\n"
                                    "(with --strict, also if any theorem rests on a given or a stated rule), 3 if a step\n"
                                    "ran past its time budget and nothing failed.")
    pr.add_argument("--no-crosscheck", action="store_true", help="skip the numeric cross-checks (they never count as proof)")
    pr.add_argument("--write", metavar="DIR", help="also write the theorems' LaTeX, main.tex and README.md into DIR (e.g. proofs/)")
    pr.add_argument("--force", action="store_true", help="overwrite files in DIR that symgrad did not write")
    pr.add_argument("--readme", metavar="FILE", help="rewrite the theorem-status block of FILE (between symgrad's markers)")
    pr.add_argument("--strict", action="store_true",
                    help="exit 1 unless every theorem is proved outright (resting on no given and no stated rule)")
    pr.set_defaults(func=_cmd_prove)
    b = sub.add_parser("bounds", help="facts about an activation's derivative and the gradient regime", epilog=EXAMPLES["bounds"], formatter_class=raw)
    b.add_argument("--activation", default="sigmoid", help="built-in name or an expression in z, e.g. 'z*sigmoid(z)'")
    b.add_argument("--weight-scale", type=_weight_scale, default=1.0, metavar="W", help="typical |w| of the weights (default 1.0)")
    b.add_argument("--depth", type=_positive_int, default=10, help="layers to compound the per-layer factor over (default 10)")
    b.add_argument("--json", action="store_true", help="print the facts as JSON")
    b.set_defaults(func=_cmd_bounds)

    m = sub.add_parser("meanfield", help="the typical case of a wide dense network: q*, chi1, depth scale, phase",
                       epilog=EXAMPLES["meanfield"] + "\n\n--json keys: activation, sigma_w2, sigma_b2, depth, q_star, chi1, xi_grad,\n"
                       "phase, critical_sigma_w2, predicted_ratio; each number is {value, error, exact, text}\n"
                       "(value null where infinite, error 0 where exact, exact SymPy's string or null;\n"
                       "predicted_ratio also has log10), phase a string, critical_sigma_w2 null where none.",
                       formatter_class=raw,
                       description="Mean-field signal propagation at initialisation (Poole et al. 2016, Schoenholz et al. 2017):\n"
                                   "weights N(0, sigma_w2/n_in), biases N(0, sigma_b2).  Exact where a closed form exists,\n"
                                   "otherwise quadrature with its error.")
    m.add_argument("--activation", default="tanh", help="built-in name or an expression in z (default tanh)")
    m.add_argument("--sigma-w2", type=_variance_option("--sigma-w2"), required=True, metavar="X", help="weight variance sigma_w^2 (times 1/n_in)")
    m.add_argument("--sigma-b2", type=_variance_option("--sigma-b2"), default=0.0, metavar="Y", help="bias variance sigma_b^2 (default 0)")
    m.add_argument("--depth", type=_positive_int, default=50, help="layers L for the gradient ratio chi1^(L-1) (default 50)")
    m.add_argument("--monte-carlo", action="store_true", help="also check a sampled wide network (width 500) against the prediction; exit 1 if it disagrees")
    m.add_argument("--json", action="store_true", help="print the facts as JSON (schema below)")
    m.add_argument("--format", choices=("text", "latex"), default="text", help="text (default) or latex: the derivation as a LaTeX document")
    m.add_argument("-o", "--output", metavar="FILE.tex", help="with --format latex: write to this file (atomically); - or no -o: stdout")
    m.add_argument("--force", action="store_true", help="overwrite a file that symgrad did not write")
    m.set_defaults(func=_cmd_meanfield)

    r = sub.add_parser("report", help="the gradient-flow report of a dense network on a batch: per layer, measured, mean field, worst case",
                       epilog=EXAMPLES["report"] + "\n\n--weights: .npz, or a PyTorch state_dict (.pt/.pth, read with weights_only=True);\n"
                       "keys W1..WL/b1..bL or an nn.Sequential's (0.weight, 0.bias, 2.weight, ...).\n"
                       "--data: .npz with arrays 'inputs' (batch, n0) and 'targets' (batch, nL).\n"
                       "Without --weights the weights are sampled (--init, --seed); without --data the batch is\n"
                       "standard normal inputs and uniform targets (--batch, --seed).",
                       formatter_class=raw,
                       description="Per layer: the speed of learning |dC/db^l| and |dC/dW^l| measured on the batch, its ratio to the\n"
                                   "last layer, the mean-field prediction from the layer's own weight and bias variances, the\n"
                                   "worst-case bound (sup|phi'| times |W|_2), dead and saturated units; then a verdict\n"
                                   "(vanishing, exploding or healthy) by the stated criteria.")
    r.add_argument("--widths", type=_widths, help="layer widths n0,...,nL, e.g. 784,256,10 (default: from --weights)")
    r.add_argument("--activation", default="sigmoid", help="hidden layers' activation: built-in name or an expression in z")
    r.add_argument("--output-activation", default=None, help="the last layer's activation (default: --activation)")
    r.add_argument("--loss", type=_name("--loss", "e.g. --loss quadratic"), default="quadratic", help="quadratic or cross_entropy")
    r.add_argument("--residual", type=_name("--residual", "e.g. --residual 0.5"), metavar="A",
                   help="residual layers a_l = a_{l-1} + A phi(z_l): one A for every hidden layer that keeps its width, "
                        "or one entry per layer (none for plain), e.g. none,0.5,0.5,none")
    r.add_argument("--weights", metavar="FILE", help="weights file (.npz or a state_dict .pt); default: sampled")
    r.add_argument("--data", metavar="FILE.npz", help="the batch: arrays 'inputs' and 'targets'; default: random")
    r.add_argument("--init", type=_init, default="xavier", metavar="INIT", help="with no --weights: %s (default xavier)" % ", ".join(INITS))
    r.add_argument("--batch", type=_batch, default=None, metavar="B", help="with no --data: random inputs (default 256)")
    r.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    r.add_argument("--threshold", type=_threshold, default=10.0, metavar="T", help="a layer T times slower/faster than the last is vanishing/exploding (default 10)")
    r.add_argument("--format", choices=("text", "json", "latex"), default="text", help="text (default), json or latex")
    r.add_argument("-o", "--output", metavar="FILE.tex", help="with --format latex: write to this file (atomically); - or no -o: stdout")
    r.add_argument("--force", action="store_true", help="overwrite a file that symgrad did not write")
    r.set_defaults(func=_cmd_report)

    pl = sub.add_parser("plot", help="draw a figure as PNG, PDF or SVG: activation, gradient-flow, phase-diagram, steep-interval, speed-of-learning",
                        epilog=EXAMPLES.get("plot", "example: symgrad plot activation --activation sigmoid -o sigmoid.png") +
                        "\n\nOptions by KIND (others are refused):\n"
                        "  activation         --activation --z LO,HI --points N --saturation FRACTION\n"
                        "  gradient-flow      --depth L (a chain) or --widths n0,...,nL (dense), --activation --residual ALPHA\n"
                        "                     --loss --init --samples N --batch B --seed S\n"
                        "  phase-diagram      --activation --sigma-w2 LO,HI --sigma-b2 LO,HI --points N --monte-carlo W2:B2,... --seed S\n"
                        "  steep-interval     --w LO,HI --points N\n"
                        "  speed-of-learning  --data FILE.json ({\"1\": [norm at init, after epoch 1, ...], \"2\": [...]}) --title TEXT\n"
                        "Needs matplotlib: pip install 'symgrad[plot]'.",
                        formatter_class=raw,
                        description="Draw one of symgrad's figures (symgrad.render.plots) and write it atomically; the format\n"
                                    "follows the suffix of -o.  A file symgrad did not write is kept unless --force.")
    pl.add_argument("kind", metavar="KIND", help="activation, gradient-flow, phase-diagram, steep-interval or speed-of-learning")
    pl.add_argument("-o", "--output", metavar="FILE", help="FILE.png, FILE.pdf or FILE.svg (required)")
    pl.add_argument("--force", action="store_true", help="overwrite a file that symgrad did not write")
    pl.add_argument("--activation", type=_name("--activation", "e.g. --activation tanh"), help="built-in name or an expression in z")
    for opt, meta, text in (("--z", "LO,HI", "activation: the range of z (default -8,8)"),
                            ("--points", "N", "grid points (per axis)"),
                            ("--saturation", "FRACTION", "activation: shade where |phi'| < FRACTION * sup|phi'| (default 0.01)"),
                            ("--depth", "L", "gradient-flow: a chain of depth L (default 20)"),
                            ("--residual", "ALPHA", "gradient-flow: residual layers a = a_prev + ALPHA phi(z)"),
                            ("--loss", "LOSS", "gradient-flow: quadratic (default) or cross_entropy"),
                            ("--init", "INIT", "gradient-flow: %s (default normal for chains, xavier for networks)" % ", ".join(INITS)),
                            ("--samples", "N", "gradient-flow: sampled networks (default 100 chains, 20 networks)"),
                            ("--batch", "B", "gradient-flow: inputs per dense network (default 64)"),
                            ("--seed", "S", "random seed (default 0)"),
                            ("--sigma-w2", "LO,HI", "phase-diagram: the sigma_w^2 range (default 0.25,4)"),
                            ("--sigma-b2", "LO,HI", "phase-diagram: the sigma_b^2 range (default 0,1)"),
                            ("--monte-carlo", "W2:B2,...", "phase-diagram: Monte-Carlo points (width 200, depth 20)"),
                            ("--w", "LO,HI", "steep-interval: the range of |w| (default 0,30)"),
                            ("--data", "FILE.json", "speed-of-learning: per-layer gradient norms over epochs"),
                            ("--title", "TEXT", "speed-of-learning: the figure's title")):
        pl.add_argument(opt, type=_name(opt, "e.g. %s %s" % (opt, meta)), metavar=meta, help=text)
    pl.add_argument("--widths", type=_widths, help="gradient-flow: widths of a dense network, e.g. 16,16,16,2")
    pl.set_defaults(func=_cmd_plot)

    ex = sub.add_parser("experiment", help="run an experiment: speed-of-learning (Nielsen ch. 5 on the 8x8 digits, trained with symgrad's backprop)",
                        epilog="example: symgrad experiment speed-of-learning --epochs 20 --seed 0 -o speed.png\n"
                               "         symgrad experiment speed-of-learning --activation relu --init he\n"
                               "         symgrad experiment speed-of-learning --residual 1\n"
                               "Needs scikit-learn (the data) and tqdm: pip install 'symgrad[experiment]'; -o also matplotlib.",
                        formatter_class=raw,
                        description="Train [64,30,10] .. [64,30,30,30,30,10] on scikit-learn's digits with mini-batch SGD and the\n"
                                    "cross-entropy cost; print |dC/db^l| per hidden layer at initialisation and after the last epoch,\n"
                                    "the layers from slowest to fastest, first/last hidden layer, test accuracy, and Nielsen's\n"
                                    "MNIST figures.  -o draws the deepest network's |dC/db^l| over the epochs.  Reproducible from --seed.")
    ex.add_argument("name", metavar="NAME", choices=("speed-of-learning",), help="speed-of-learning")
    ex.add_argument("--networks", type=lambda t: [_widths(w) for w in t.split("/")], metavar="W/W/...",
                    help="width lists separated by '/', e.g. 64,30,10/64,30,30,10 (default: Nielsen's four)")
    ex.add_argument("--activation", type=_name("--activation", "e.g. --activation relu"), default="sigmoid", help="hidden layers' activation (default sigmoid)")
    ex.add_argument("--init", choices=("nielsen", "he"), default="nielsen", help="nielsen (default): N(0,1/n_in), biases N(0,1); he: N(0,2/n_in), biases 0")
    ex.add_argument("--residual", type=_finite_float, metavar="ALPHA", help="residual hidden layers a = a_prev + ALPHA phi(z) (layers 2.. of equal width)")
    ex.add_argument("--epochs", type=_int_option("e.g. --epochs 20", "non-negative number of epochs", 0, 10_000), default=20, help="epochs (default 20)")
    ex.add_argument("--eta", type=_finite_float, default=0.1, metavar="X", help="learning rate (default 0.1)")
    ex.add_argument("--batch-size", type=_int_option("e.g. --batch-size 10", "positive mini-batch size", 1, 1300), default=10, help="mini-batch (default 10)")
    ex.add_argument("--eval-size", type=_int_option("e.g. --eval-size 1000", "positive number of images", 1, 1300), default=1000,
                    help="training images on which |dC/db^l| is measured (default 1000)")
    ex.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    ex.add_argument("--json", action="store_true", help="print the results as JSON")
    ex.add_argument("-o", "--output", metavar="FILE", help="also write the figure: FILE.png, FILE.pdf or FILE.svg")
    ex.add_argument("--force", action="store_true", help="overwrite a file that symgrad did not write")
    ex.set_defaults(func=_cmd_experiment)

    sw = sub.add_parser("sweep", help="a grid of Monte-Carlo checks of mean field (sigma_w2 x sigma_b2 x activation x depth) on Dask",
                        epilog="example: symgrad sweep --activation tanh --sigma-w2 0.5:3:6 --sigma-b2 0,0.05 --depth 20 --width 200 -o sweep.csv\n"
                               "Axes: LO:HI:N (N evenly spaced values) or a,b,c (strictly increasing).  Rerun the same command to\n"
                               "resume: rows already in -o are not recomputed.  Needs dask: pip install 'symgrad[dask]'\n"
                               "(or --workers 0 to run in this process).",
                        formatter_class=raw,
                        description="One symgrad.theory.montecarlo.check_wide_network per grid point, each seeded from (--seed, point),\n"
                                    "so the table does not depend on the number of workers.  One CSV row per point.")
    sw.add_argument("--activation", type=_name("--activation", "e.g. --activation tanh,relu"), default="tanh", help="activations, comma-separated (default tanh)")
    sw.add_argument("--sigma-w2", type=_name("--sigma-w2", "e.g. --sigma-w2 0.5:3:6"), required=True, metavar="GRID", help="weight variances: LO:HI:N or a,b,c")
    sw.add_argument("--sigma-b2", type=_name("--sigma-b2", "e.g. --sigma-b2 0,0.05"), default="0", metavar="GRID", help="bias variances (default 0)")
    sw.add_argument("--depth", type=_name("--depth", "e.g. --depth 10,20"), default="20", metavar="D,...", help="depths (default 20)")
    sw.add_argument("--width", type=_int_option("e.g. --width 200", "width >= 2", 2, 100_000), default=200, help="units per layer (default 200)")
    sw.add_argument("--batch", type=_batch, default=16, metavar="B", help="inputs per network (default 16)")
    sw.add_argument("--repeats", type=_int_option("e.g. --repeats 6", "number of networks >= 3", 3, 10_000), default=6, help="networks per point (default 6)")
    sw.add_argument("--level", type=_finite_float, default=0.99, help="family-wise confidence level (default 0.99)")
    sw.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    sw.add_argument("-o", "--output", metavar="FILE.csv", help="the table, and the checkpoint a rerun resumes from (required)")
    sw.add_argument("--workers", type=_int_option("e.g. --workers 2", "number of workers >= 0", 0, 1024), default=None,
                    help="local Dask workers (default 2); 0: run in this process without Dask")
    sw.add_argument("--scheduler", type=_name("--scheduler", "e.g. --scheduler tcp://127.0.0.1:8786"), metavar="ADDRESS", help="connect to this Dask scheduler")
    sw.add_argument("--timeout", type=_budget_seconds, default=10.0, metavar="S", help="seconds to wait for the scheduler (default 10)")
    sw.set_defaults(func=_cmd_sweep)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    try:
        _refuse_repeated_options(sys.argv[1:] if argv is None else argv)
        args = _parser().parse_args(argv)
        return args.func(args)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        print("symgrad: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout was closed early (``symgrad report ... | head``): stop quietly, and keep Python's
        # exit-time flush from raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except InvalidArgument as exc:
        print("symgrad: error: %s" % _one_line(exc), file=sys.stderr)
        return 2
    except MemoryError:
        # The library estimates memory before it allocates; this is the net under that estimate.
        print("symgrad: error: out of memory; ask for less (a smaller --batch, --widths or --depth)", file=sys.stderr)
        return 2
    except BudgetExceeded as exc:
        print("symgrad: unknown: %s" % _one_line(exc.reason), file=sys.stderr)
        return EXIT_UNKNOWN
    except GradientCheckError as exc:
        print("symgrad: check failed: %s" % exc, file=sys.stderr, flush=True)
        return 1
    except SymgradError as exc:
        print("symgrad: error: %s" % _one_line(exc), file=sys.stderr)
        return 2


def _refuse_repeated_options(argv) -> None:
    """An option given twice (``--depth 4 --depth 5``) is a conflict, not "the last one wins"."""
    seen = {}
    for tok in argv:
        if tok == "--":
            break
        if tok.startswith("--") and len(tok) > 2:
            name = tok.split("=", 1)[0]
        elif tok.startswith("-") and len(tok) == 2 and tok[1].isalpha():
            name = tok
        else:
            continue
        if name in seen:
            raise InvalidArgument("option %s is given twice; give it once (with every value comma-separated where it takes a list, e.g. --wrt b1,w2)" % name)
        seen[name] = True


#: Longest error line; a longer one keeps its start (the problem) and its end (the fix).
MAX_MESSAGE = 1000


def _one_line(exc) -> str:
    text = " ".join(str(exc).split())
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE * 2 // 3] + " [... %d characters ...] " % (len(text) - MAX_MESSAGE) + text[-MAX_MESSAGE // 3:]
    return text


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
