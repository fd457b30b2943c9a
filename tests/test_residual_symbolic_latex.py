"""LaTeX derivations of residual networks: the skip connection's 1 (chains) and I (dense) in the
backward step, α_j in ∂a_j/∂b_j, Theorem 18's bound, and documents that compile with no
overfull box."""

from __future__ import annotations

import sympy

import symgrad
from symgrad.render import latex as sl

from .test_latex import compile_clean

ALPHA = sympy.Symbol("alpha", real=True)
L = sympy.Symbol("L", integer=True, positive=True)


def test_residual_chain_derivation_shows_the_skip_connection_and_alpha_j():
    tex = sl.derivation(symgrad.chain(3, "tanh", residual=ALPHA).gradient("b1"))
    assert r"a_{k} &= a_{k-1} + \alpha\,\tanh(z_{k})" in tex
    assert r"\frac{\partial a_{k}}{\partial a_{k-1}} &= 1 + \alpha_{k}\, w_{k}\, \tanh'(z_{k})" in tex
    assert r"\frac{\partial a_{k}}{\partial z_{k}} &= \alpha_{k}\, \tanh'(z_{k})" in tex
    assert r"\frac{\partial C}{\partial b_{1}} &= \alpha\,\tanh'\mathopen{}\left(z_{1}\right)\,\left(1 + \alpha w_{2}" in tex
    assert r"\prod_{k=j+1}^{L} \bigl(1 + \alpha\, w_{k}\, \tanh'(z_{k})\bigr)" in tex
    assert r"(1 - r)^{2} \le" in tex and r"\le (1 + r)^{2}" in tex and "Theorem 18" in tex


def test_mixed_chain_names_its_residual_layers_and_steps():
    tex = sl.derivation(symgrad.chain(3, "tanh", residual=[None, ALPHA, 0.5]).gradient("w1"))
    assert r"Layers 2, 3 are residual, with $\alpha_{2} = \alpha$, $\alpha_{3} = \frac{1}{2}$" in tex
    assert r"&= w_{k}\, \tanh'(z_{k}) \quad \text{(plain } k\text{)}" in tex
    assert r"\frac{\partial C}{\partial w_{1}} &= a_{0}\,\tanh'" in tex
    last = sl.derivation(symgrad.chain(3, "tanh", residual=[ALPHA, None, None]).gradient("b2"))
    assert "No residual layer follows layer 2" in last


def test_residual_dense_derivation_has_identity_plus_alpha_wt_sigma():
    net = symgrad.network([2, 2, 2, 1], "tanh", residual=[ALPHA, 0.5, None])
    tex = sl.derivation(net.gradient("W1"))
    assert r"g^{k-1} &= \bigl(I + \alpha_{k} (W^{k})^{T} \Sigma'(z^{k})\bigr)\, g^{k}" in tex
    assert r"\frac{\partial C}{\partial b^{k}} &= \alpha_{k}\, \Sigma'(z^{k})\, g^{k}" in tex
    assert r"\alpha\, \Sigma'(z^{1})\,\bigl(I + \frac{1}{2}\, (W^{2})^{T}\, \Sigma'(z^{2})\bigr)" in tex
    tex0 = sl.derivation(symgrad.network([2, 2, 2], "relu", residual=0.5).gradient("a0"))
    assert r"(1 - r)^{2}\, \lVert g^{2} \rVert \le \lVert g^{0} \rVert \le (1 + r)^{2}\, \lVert g^{2} \rVert" in tex0


def test_symbolic_depth_residual_derivation():
    tex = sl.derivation(symgrad.chain(L, "tanh", residual=ALPHA).gradient("w"))
    assert r"a_{k} &= a_{k-1} + \alpha\,\tanh(z_{k})" in tex
    assert r"a_{j - 1}\, \alpha\,\tanh'(z_{j}) \prod_{k=j+1}^{L} \bigl(1 + \alpha\,w_{k}\, \tanh'(z_{k})\bigr)" in tex


def test_residual_documents_compile_without_overfull_boxes(tmp_path):
    chain = symgrad.chain(4, "tanh", residual=ALPHA)
    grads = [chain.gradient(n) for n in ("b1", "w2", "a0", "b4")]
    grads += [symgrad.chain(20, "sigmoid", residual=0.5).gradient("w1"),
              symgrad.chain(5, "relu", residual=[None, ALPHA, 1, None, 0.25]).gradient("b1"),
              symgrad.chain(3, "sigmoid", "cross_entropy", residual=[ALPHA, 0.5, None]).gradient("b1"),
              symgrad.chain(L, "sigmoid", residual=ALPHA).gradient("b"),
              symgrad.chain(L, "tanh", residual=0.5).gradient("w", layer=2)]
    dense = symgrad.network([2, 2, 2, 1], "tanh", residual=[ALPHA, 0.5, None])
    grads += [dense.gradient(n) for n in ("b1", "W1", "W2[1,0]", "a0", "b3")]
    grads += [symgrad.network([3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3], "silu", residual=ALPHA).gradient("b1")]
    compile_clean(tmp_path, sl.document(grads, title="Residual networks"), "residual")
