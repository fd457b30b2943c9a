"""The ``symgrad`` command line.  ``main(argv) -> int`` so tests can call it directly.

Exit codes: 0 success, 1 a check failed, 2 bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import sys

from .errors import GradientCheckError, InvalidArgument, SymgradError

__all__ = ["main"]

EXAMPLES = {
    "derive": "example: symgrad derive --depth 4 --activation sigmoid --wrt b1 --verify",
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad options as InvalidArgument (exit 2, one line) instead of usage dumps."""

    def error(self, message):
        raise InvalidArgument("%s: %s (see '%s --help')" % (self.prog, message, self.prog))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not an integer; pass e.g. --depth 4" % text) from None
    return value


def _widths(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a comma-separated list of ints; pass e.g. --widths 2,3,1" % text) from None


def _build_network(args):
    from .networks import chain, network

    if args.widths is not None:
        return network(args.widths, activation=args.activation, loss=args.loss)
    return chain(args.depth, activation=args.activation, loss=args.loss)


def _cmd_derive(args) -> int:
    import sympy

    net = _build_network(args)
    grad = net.gradient(args.wrt)
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


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="symgrad", description="Verified gradient-flow analysis: closed-form gradient chains of deep networks.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    d = sub.add_parser("derive", help="derive the closed-form gradient of one parameter", epilog=EXAMPLES["derive"])
    net = d.add_mutually_exclusive_group()
    net.add_argument("--depth", type=_positive_int, default=4, help="depth of a single-neuron chain (default 4)")
    net.add_argument("--widths", type=_widths, help="widths of a dense network, e.g. 2,3,1")
    d.add_argument("--activation", default="sigmoid", help="built-in name or an expression in z, e.g. 'z*sigmoid(z)'")
    d.add_argument("--loss", default="quadratic", help="quadratic or cross_entropy")
    d.add_argument("--wrt", default="b1", help="parameter name, e.g. b1, w3, W2, 'W2[1,0]'")
    d.add_argument("--format", choices=("text", "latex", "srepr"), default="text")
    d.add_argument("--verify", action="store_true", help="check the closed form against sympy.diff of the composed loss")
    d.set_defaults(func=_cmd_derive)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    try:
        args = _parser().parse_args(argv)
        return args.func(args)
    except InvalidArgument as exc:
        print("symgrad: error: %s" % exc, file=sys.stderr)
        return 2
    except GradientCheckError as exc:
        print("symgrad: check failed: %s" % exc, file=sys.stderr)
        return 1
    except SymgradError as exc:
        print("symgrad: error: %s" % exc, file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
