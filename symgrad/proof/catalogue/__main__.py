"""``python -m symgrad.proof.catalogue [--write DIR] [--no-crosscheck]``: prove the catalogue and
optionally write its LaTeX (what ``symgrad prove --write`` does, without the README option)."""

from __future__ import annotations

import argparse
import sys

from symgrad.proof.catalogue import check_write_targets, run, write_latex


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m symgrad.proof.catalogue", description="Prove the catalogue; optionally write its LaTeX.")
    ap.add_argument("--write", metavar="DIR", help="write the LaTeX files and README into DIR (e.g. proofs/)")
    ap.add_argument("--no-crosscheck", action="store_true", help="skip the numeric cross-checks")
    args = ap.parse_args(argv)
    if args.write:
        check_write_targets(args.write)
    results = run(verbose=True, crosscheck=not args.no_crosscheck)
    if args.write:
        for p in write_latex(args.write, results):
            print("wrote", p)
    failed = [r for r in results if not r.checked]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
