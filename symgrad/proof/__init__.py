"""Proofs: :mod:`~symgrad.proof.engine` (theorems, steps, certified roots) and
:mod:`~symgrad.proof.catalogue` (the source claims and more, each proved exactly and rendered in LaTeX)."""
