"""Rendering: :mod:`~symgrad.render.latex` (derivations as LaTeX that compiles)."""
