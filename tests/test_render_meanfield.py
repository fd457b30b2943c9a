"""The mean-field derivation in LaTeX: its content per activation, and documents that compile."""

from __future__ import annotations

import pytest

import symgrad
from symgrad.render.meanfield import meanfield_derivation, meanfield_latex
from tests.test_latex import compile_clean


def test_relu_derivation_says_chi1_is_half_sigma_w2():
    tex = meanfield_derivation("relu", 2, 0, 50)
    assert r"\mathbb{E}\bigl[H(Z)^2\bigr] = \frac{\sigma_w^2}{2}" in tex
    assert r"&= 1." in tex and r"\emph{critical}" in tex and r"\infty \quad \text{(critical)}" in tex
    assert r"\frac{q}{2}" in tex  # the closed-form length map


def test_tanh_at_zero_bias_has_q_star_zero_and_chi1_sigma_w2():
    tex = meanfield_derivation("tanh", sympy_half(), 0, 10)
    assert r"q^{*} &= 0" in tex and r"\tanh'(0)^2" in tex and r"\emph{ordered}" in tex
    assert r"&= \frac{1}{2}." in tex


def sympy_half():
    import sympy

    return sympy.Rational(1, 2)


def test_quadrature_values_are_shown_with_their_error():
    tex = meanfield_derivation("tanh", 2.5, 0.1, 20)
    assert r"\chi_1 &= " in tex and r"\pm" in tex and r"\emph{chaotic}" in tex


@pytest.mark.parametrize("bad, match", [((-1, 0, 5), "sigma_w2=-1"), ((3, 0, 5), "no finite fixed point"), ((2, 0, 0), "depth=0")])
def test_bad_input(bad, match):
    with pytest.raises(symgrad.InvalidArgument, match=match):
        meanfield_latex("relu", *bad)


@pytest.mark.parametrize("case", [("relu", 2, 0, 50), ("tanh", 1, 0, 10), ("tanh", 25 / 9, 0, 50), ("sigmoid", 1, 0, 1000),
                                  ("selu", 0.3, 0, 10), ("leaky_relu", 1.5, 0.5, 20), ("z*sigmoid(z)", 1.5, 0.5, 5)])
def test_documents_compile_without_overfull_boxes(tmp_path, case):
    compile_clean(tmp_path, meanfield_latex(*case))
