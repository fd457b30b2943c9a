"""The ``symgrad`` command line.  ``main(argv) -> int`` so tests can call it directly.

Exit codes: 0 success, 1 a check failed, 2 bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import os
import math
import sys
import threading
import time
from contextlib import contextmanager

from .errors import GradientCheckError, InvalidArgument, SymgradError

__all__ = ["main"]

EXAMPLES = {
    "derive": "example: symgrad derive --depth 4 --activation sigmoid --wrt b1 --verify",
    "latex": "example: symgrad latex --depth 4 --activation sigmoid --wrt b1 -o chain.tex --pdf",
    "bounds": "example: symgrad bounds --activation sigmoid --weight-scale 1.0 --depth 10",
    "check": "example: symgrad check --widths 2,3,1 --activation tanh --batch 8 --init xavier --seed 0",
    "prove": "example: symgrad prove --no-crosscheck",
}
#: Largest ``symgrad check --batch`` (each sample is a full network evaluation per finite difference).
MAX_BATCH = 100_000
#: How long a step runs silently before it reports progress on stderr.
PROGRESS_AFTER_S = 1.0


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
    try:
        yield
    finally:
        timer.cancel()
        timer.join()
        if shown.is_set():
            print("symgrad: %s done (%.1f s)" % (what, time.monotonic() - start), file=sys.stderr, flush=True)


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad options as InvalidArgument (exit 2, one line) instead of usage dumps."""

    def error(self, message):
        where = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        raise InvalidArgument("%s%s (see '%s --help')" % (where, message, self.prog))


def _int_option(example: str, what: str, minimum: int, maximum: int | None = None):
    """An argparse type for an int option: one-line messages that say what to pass instead."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not an integer; pass %s" % (text, example)) from None
        if value < minimum:
            raise argparse.ArgumentTypeError("%d is not a %s; pass %s" % (value, what, example))
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError("%s %d exceeds the maximum %d" % (example.split()[-2], value, maximum))
        return value

    return parse


_positive_int = _int_option("e.g. --depth 4", "positive depth", 1)
_batch = _int_option("e.g. --batch 8", "positive batch size", 1, MAX_BATCH)
_seed = _int_option("e.g. --seed 0", "non-negative seed", 0)


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number; pass e.g. --value 0.5" % text) from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError("%r is not a finite number; pass e.g. --value 0.5" % text)
    return value


#: ``symgrad.numeric.sample``'s inits (kept here so ``--help`` does not import NumPy).
INITS = ("normal", "uniform", "xavier", "glorot", "xavier_normal", "he", "kaiming", "constant")


def _init(text: str) -> str:
    key = text.strip().lower()
    if key not in INITS:
        raise argparse.ArgumentTypeError("unknown init %r; known: %s" % (text, ", ".join(INITS)))
    return key


def _weight_scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number; pass the typical |w|, e.g. --weight-scale 1.0" % text) from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError("%r must be a finite |w| >= 0, e.g. --weight-scale 1.0" % text)
    return value


def _widths(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a comma-separated list of ints; pass e.g. --widths 2,3,1" % text) from None


def _build_network(args):
    from .networks import chain, network

    with _progress("building the network"):
        if args.widths is not None:
            return network(args.widths, activation=args.activation, loss=args.loss)
        return chain(args.depth, activation=args.activation, loss=args.loss)


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

    net = _build_network(args)
    grad = net.gradient(args.wrt.strip())
    if args.format == "latex":
        print(grad.latex())
    elif args.format == "srepr":
        print(sympy.srepr(grad.expr))
    else:
        print("%r" % net)
        print("dC/d%s = %s" % (args.wrt, sympy.sstr(grad.expr, order="none")))
        print("factors (chain order):")
        for f in grad.factors:
            print("  %s" % sympy.sstr(f, order="none"))
    if args.verify:
        with _progress("verifying against sympy.diff of the composed loss"):
            ok = _verify(net, grad)
        print("verified against sympy.diff of the composed loss: %s" % ("exact match" if ok else "MISMATCH"))
        return 0 if ok else 1
    return 0


def _verify(net, grad) -> bool:
    """Exact check: the closed form, made explicit, minus ``sympy.diff`` of the composed loss
    expands to zero."""
    import sympy

    explicit = grad.explicit()
    if isinstance(explicit, sympy.MatrixBase):
        names = [s for s in net.arrays[grad.wrt]]
        reference = sympy.ImmutableMatrix(explicit.shape[0], explicit.shape[1], [sympy.diff(net.loss(), s) for s in names])
        return (explicit - reference).applyfunc(sympy.expand).is_zero_matrix is True
    target = net.symbols[grad.wrt]
    return sympy.expand(explicit - sympy.diff(net.loss(), target)) == 0


def _cmd_latex(args) -> int:
    from . import latex
    from ._io import write_atomic

    if args.pdf and args.output is None:
        raise InvalidArgument("--pdf needs -o FILE.tex (the PDF is written next to it); e.g. -o chain.tex --pdf")
    if args.output is not None and args.output.endswith(".pdf"):
        raise InvalidArgument("-o %s: give the .tex path (e.g. -o chain.tex) and add --pdf for the PDF" % args.output)
    if args.pdf and not latex.pdflatex_available():
        raise InvalidArgument("--pdf: pdflatex not found; install it with 'apt-get install --no-install-recommends %s'" % " ".join(latex.PDFLATEX_PACKAGES))
    net = _build_network(args)
    grads = _gradients(net, args.wrt)
    with _progress("writing the derivation"):
        if args.fragment:
            text = "\n\n".join(latex.derivation(g, full=args.full) for g in grads)
        else:
            text = latex.document(grads, title=args.title, full=args.full)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    if args.fragment:
        from ._io import MARKER

        text = "%s -- LaTeX fragment; needs \\usepackage{amsmath,amssymb}\n%s" % (MARKER, text)
    from pathlib import Path

    pdf_path = Path(args.output).with_suffix(".pdf")
    if args.pdf:
        # Check the PDF's destination before writing anything, so a refusal leaves no half-done output.
        from ._io import _check_destination

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

    from .gradcheck import TOLERANCES, check_gradients
    from .numeric import evaluate_gradient, sample

    if args.init == "constant" and args.value is None:
        raise InvalidArgument("--init constant needs --value, e.g. --init constant --value 0.5")
    if args.value is not None and args.init != "constant":
        raise InvalidArgument("--value %g is only used with --init constant" % args.value)
    net = _build_network(args)
    names = _check_names(net, args.wrt)
    with _progress("sampling %d parameter sets (init %s, seed %d)" % (args.batch, args.init, args.seed)):
        params = sample(net, args.batch, init=args.init, seed=args.seed, value=args.value)
    rows, failures = [], []
    with _progress("checking %d gradient(s): closed form vs backprop vs finite differences" % len(names)):
        for name in names:
            report = check_gradients(net, params, wrt=name, raise_on_failure=False)
            cf = np.asarray(evaluate_gradient(net.gradient(name), params), dtype=np.float64)
            rows.append((name, float(np.max(np.abs(cf))), report.max_rel_error["backprop"],
                         report.max_rel_error["finite_difference"], report.ok))
            failures.extend(report.failures)
    tol = TOLERANCES[np.dtype(np.float64)]
    print("%r, batch %d, init %s, seed %d" % (net, args.batch, args.init, args.seed))
    print("tolerances from an error model (symgrad.gradcheck): closed form vs backprop within twice a running rounding bound; "
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
    import sympy

    b = act.bound
    facts = {
        "activation": act.name,
        "phi": sympy.sstr(act.expr),
        "phi_prime": sympy.sstr(act.derivative),
        "sup_abs_phi_prime": None if b.sup is None else sympy.sstr(b.sup),
        "sup_exact": b.exact,
        "attained_at": None if b.attained_at is None else _fmt_set(b.attained_at),
        "range_phi_prime": None if b.range is None else _fmt_set(b.range),
        "note": b.note,
        "weight_scale": scale,
    }
    if b.sup is None:
        facts.update(regime="unknown", per_layer_factor=None)
        return facts
    sup = float(b.sup)
    factor = scale * sup
    inf = None
    if b.range is not None:
        try:
            lo, hi = float(b.range.inf), float(b.range.sup)
            inf = lo if lo > 0 else (-hi if hi < 0 else 0.0)
        except (TypeError, ValueError):
            inf = None
    if factor < 1:
        regime = "vanishing"
        why = "every layer multiplies the gradient bound by at most %.4g < 1" % factor
    elif factor > 1:
        regime = "exploding"
        if inf is not None and scale * inf > 1:
            why = "every layer multiplies the gradient by at least %.4g > 1" % (scale * inf)
        else:
            why = "where |phi'(z)| is near its sup, each layer multiplies the gradient by up to %.4g > 1" % factor
    else:
        regime = "neither"
        why = "the per-layer factor bound is exactly 1"
    facts.update(regime=regime, per_layer_factor=factor, why=why, depth=depth, factor_over_depth=factor ** depth)
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

    from .activations import activation

    act = activation(args.activation)
    with _progress("finding sup|phi'| of %s" % act.name):
        facts = _bounds_facts(act, args.weight_scale, args.depth)
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    print("activation      %s" % facts["activation"])
    print("phi(z)          %s" % facts["phi"])
    print("phi'(z)         %s" % facts["phi_prime"])
    if facts["sup_abs_phi_prime"] is None:
        print("sup |phi'|      unknown (%s)" % facts["note"])
        print("regime          unknown: no bound on |phi'| is known")
        return 0
    print("sup |phi'|      %s%s" % (facts["sup_abs_phi_prime"], "" if facts["sup_exact"] else " (certified numerically)"))
    print("attained at     %s" % (facts["attained_at"] if facts["attained_at"] not in (None, "EmptySet") else "nowhere (only approached)" if facts["attained_at"] == "EmptySet" else "unknown"))
    print("range of phi'   %s" % (facts["range_phi_prime"] or "unknown"))
    print("per-layer factor |w| * sup|phi'| = %g * %s = %.4g" % (args.weight_scale, facts["sup_abs_phi_prime"], facts["per_layer_factor"]))
    print("regime          %s: %s" % (facts["regime"], facts["why"]))
    print("over %d layers  bound factor %.4g" % (args.depth, facts["factor_over_depth"]))
    return 0


def _add_network_options(p, *, wrt_help: str, wrt_default: str | None = "b1") -> None:
    net = p.add_mutually_exclusive_group()
    net.add_argument("--depth", type=_positive_int, default=4, help="depth of a single-neuron chain (default 4)")
    net.add_argument("--widths", type=_widths, help="widths of a dense network, e.g. 2,3,1")
    p.add_argument("--activation", default="sigmoid", help="built-in name or an expression in z, e.g. 'z*sigmoid(z)'")
    p.add_argument("--loss", default="quadratic", help="quadratic or cross_entropy")
    p.add_argument("--wrt", default=wrt_default, help=wrt_help)


def _cmd_prove(args) -> int:
    from . import catalogue

    if args.write is not None and not os.path.isdir(args.write):
        raise InvalidArgument("--write %s: no such directory; create it first" % args.write)
    if args.write is not None:
        catalogue.check_write_targets(args.write, force=args.force)  # refuse before the proofs run, not after
    results = catalogue.run(verbose=True, crosscheck=not args.no_crosscheck)
    failed = [r for r in results if not r.checked]  # a step failed or ran past its budget
    assuming = [r for r in results if r.checked and not r.proved]  # rests on givens or stated rules
    print(catalogue.summary(results))
    if args.write is not None:
        for path in catalogue.write_latex(args.write, results, force=args.force):
            print("wrote %s" % path)
    if args.readme is not None:
        print("updated %s" % catalogue.update_readme(args.readme, results))
    return 1 if failed or (args.strict and assuming) else 0


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="symgrad", description="Verified gradient-flow analysis: closed-form gradient chains of deep networks.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    raw = argparse.RawDescriptionHelpFormatter
    d = sub.add_parser("derive", help="derive the closed-form gradient of one parameter", epilog=EXAMPLES["derive"], formatter_class=raw)
    _add_network_options(d, wrt_help="parameter name, e.g. b1, w3, W2, 'W2[1,0]'")
    d.add_argument("--format", choices=("text", "latex", "srepr"), default="text", help="text (default), latex or sympy srepr")
    d.add_argument("--verify", action="store_true", help="check the closed form against sympy.diff of the composed loss")
    d.set_defaults(func=_cmd_derive)

    t = sub.add_parser("latex", help="write the derivation as a LaTeX document (and PDF)", epilog=EXAMPLES["latex"], formatter_class=raw,
                       description="Write the chain rule, local derivatives, closed form, product form and bound as LaTeX.")
    _add_network_options(t, wrt_help="parameter name(s), comma-separated, e.g. b1 or b1,w2")
    t.add_argument("-o", "--output", metavar="FILE.tex", help="write to this file (atomically) instead of stdout")
    t.add_argument("--pdf", action="store_true", help="also compile FILE.pdf with pdflatex (needs -o)")
    t.add_argument("--force", action="store_true", help="overwrite files that symgrad did not write")
    t.add_argument("--fragment", action="store_true", help="write a fragment to paste into a document, not a standalone file")
    t.add_argument("--full", action="store_true", help="write every layer of deep chains instead of eliding the middle")
    t.add_argument("--title", default="Gradient derivations", help="document title")
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
    c.set_defaults(func=_cmd_check)

    pr = sub.add_parser("prove", help="run the proof catalogue: each theorem proved or failed", epilog=EXAMPLES["prove"], formatter_class=raw,
                        description="Prove every theorem of the catalogue (symgrad/catalogue.py) step by step, each step checked\n"
                                    "exactly; print one line per theorem with the failing step, if any, and the numeric cross-check.\n"
                                    "A theorem is 'proved' only when it rests on nothing unchecked; otherwise its line says\n"
                                    "'proved assuming N given(s) and M stated rule(s)' and names them.  Exit 1 if a step fails\n"
                                    "(with --strict, also if any theorem rests on a given or a stated rule).")
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
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    try:
        args = _parser().parse_args(argv)
        return args.func(args)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        print("symgrad: interrupted", file=sys.stderr)
        return 130
    except InvalidArgument as exc:
        print("symgrad: error: %s" % _one_line(exc), file=sys.stderr)
        return 2
    except GradientCheckError as exc:
        print("symgrad: check failed: %s" % exc, file=sys.stderr, flush=True)
        return 1
    except SymgradError as exc:
        print("symgrad: error: %s" % _one_line(exc), file=sys.stderr)
        return 2


def _one_line(exc) -> str:
    return " ".join(str(exc).split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
