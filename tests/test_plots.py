"""The figures of symgrad.render.plots: each figure's plotted arrays are read back from its Axes
(by gid) and compared with the values computed independently; no pixels are compared.  Grids are
tiny so that the file runs in a few seconds."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import symgrad
from symgrad import InvalidArgument
from symgrad._io import is_symgrad_file
from symgrad.cli import main
from symgrad.render import plots
from symgrad.theory import meanfield


def _lines(fig, gid):
    return [l for l in fig.axes[0].lines if l.get_gid() == gid]


def _line(fig, gid):
    (l,) = _lines(fig, gid)
    return np.asarray(l.get_xdata(), float), np.asarray(l.get_ydata(), float)


# --- 1. activation ------------------------------------------------------------------------------


def test_activation_data_sup_and_saturation():
    z = np.linspace(-8, 8, 321)
    fig = plots.activation_figure("sigmoid", z)
    act = symgrad.activation("sigmoid")
    x, y = _line(fig, "phi")
    assert np.array_equal(x, z) and np.array_equal(y, act.value(z))
    x, y = _line(fig, "dphi")
    assert np.array_equal(y, act.grad(z))
    _, sup = _line(fig, "sup")
    assert np.all(sup == 0.25)
    px, py = _line(fig, "attained")
    assert px.tolist() == [0.0] and py.tolist() == [0.25]
    # The shaded spans are exactly the runs of grid points where |φ'| < 1% of 1/4 (|z| > 5.99).
    spans = [p for p in fig.axes[0].patches if (p.get_gid() or "").startswith("saturation-")]
    mask = np.abs(act.grad(z)) < 0.01 * 0.25
    got = sorted((round(p.get_x(), 12), round(p.get_x() + p.get_width(), 12)) for p in spans)
    assert got == [(-8.0, float(z[mask & (z < 0)].max())), (float(z[mask & (z > 0)].min()), 8.0)]
    assert 5.9 < got[1][0] < 6.1
    ax = fig.axes[0]
    assert "sigmoid" in ax.get_title() and "z" in ax.get_xlabel() and ax.get_ylabel()


def test_activation_interval_empty_and_unknown_sup():
    z = np.linspace(-2, 2, 41)
    relu = plots.activation_figure("relu", z)
    x, y = _line(relu, "attained-interval-0")
    assert x.tolist() == [0.0, 2.0] and y.tolist() == [1.0, 1.0]  # sup attained on (0, ∞), clipped to the grid
    soft = plots.activation_figure("softplus", z)
    assert not _lines(soft, "attained") and "approached, not attained" in _lines(soft, "sup")[0].get_label()
    custom = plots.activation_figure("z*tanh(z)", z)  # symgrad does not know this sup: the grid's max stands in
    dphi = symgrad.activation("z*tanh(z)").grad(z)
    _, sup = _line(custom, "sup")
    assert abs(sup[0]) == np.max(np.abs(dphi)) and "sup unknown" in _lines(custom, "sup")[0].get_label()


# --- 2. gradient flow -----------------------------------------------------------------------------


def test_gradient_flow_chain_against_backprop():
    L, n = 6, 12
    net = symgrad.chain(L, "sigmoid")
    fig = plots.gradient_flow_figure(net, samples=n, seed=3)
    p = symgrad.sample(net, n, init="normal", seed=3)
    res = symgrad.backprop(net, p, log_space=True)
    ln10 = math.log(10)
    ratio = np.stack([(res.log_abs["b%d" % l] - res.log_abs["b%d" % L]) / ln10 for l in range(1, L + 1)], axis=1)
    sup = 0.25
    # B_l = Π_{k=l}^{L−1} sup|φ'| |w_{k+1}|, per sample.
    logw = np.stack([np.log10(np.abs(p["w%d" % k])) for k in range(1, L + 1)], axis=1)
    bound = np.stack([logw[:, l:].sum(axis=1) + (L - l) * math.log10(sup) for l in range(1, L + 1)], axis=1)
    x, med = _line(fig, "measured-median")
    assert x.tolist() == list(range(1, L + 1))
    # Two evaluations of the same quantity (the report's norms vs backprop's log space): a few ulps
    # of numbers of magnitude ≤ 20 in log10, far below 1e-12.
    np.testing.assert_allclose(med, np.quantile(ratio, 0.5, axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(_line(fig, "measured-low")[1], np.quantile(ratio, 0.1, axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(_line(fig, "measured-high")[1], np.quantile(ratio, 0.9, axis=0), rtol=0, atol=1e-12)
    _, worst = _line(fig, "worst-case")
    np.testing.assert_allclose(worst, np.quantile(bound, 0.5, axis=0), rtol=0, atol=1e-12)
    assert np.all(worst >= med - 1e-12)  # ρ ≤ B per sample, so every quantile of B is above ρ's
    g = meanfield.growth_rate("sigmoid", "normal", seed=0)
    _, typ = _line(fig, "typical")
    np.testing.assert_allclose(typ, g.rate * (L - np.arange(1, L + 1)) / ln10, rtol=1e-15, atol=0)
    assert "sigmoid chain, depth 6" in fig.axes[0].get_title() and "12 samples" in fig.axes[0].get_title()


def test_gradient_flow_report_and_dense_networks():
    net = symgrad.network([4, 6, 6, 6, 2], "tanh")
    rng = np.random.default_rng(0)
    params = symgrad.sample(net, init="xavier", seed=1)
    rep = symgrad.report(net, params, inputs=rng.normal(size=(16, 4)), targets=rng.uniform(size=(16, 2)))
    fig = plots.gradient_flow_figure(rep)
    assert _line(fig, "measured-median")[1].tolist() == [l.log10_rms_ratio for l in rep.layers]
    assert _line(fig, "worst-case")[1].tolist() == [l.log10_worst_case for l in rep.layers]
    assert _line(fig, "typical")[1].tolist() == [l.log10_predicted for l in rep.layers]
    assert not _lines(fig, "measured-low")  # one batch: no band
    for residual in (None, [None, 0.5, 0.5, None]):
        fig = plots.gradient_flow_figure(symgrad.network([4, 6, 6, 6, 2], "tanh", residual=residual), samples=3, batch=8)
        _, lo = _line(fig, "measured-low")
        _, med = _line(fig, "measured-median")
        _, hi = _line(fig, "measured-high")
        assert np.all(lo <= med) and np.all(med <= hi) and med[-1] == 0.0
        assert len(_line(fig, "typical")[1]) == 4
    assert "residual α = 1/2" in fig.axes[0].get_title()


def test_dense_measured_against_report_and_deltas():
    """The measured ρ_l: equal to the report's column for a plain network (two code paths), and to
    ρ_l formed from backprop's δ^l directly for a residual one, whose ρ differs from the plain one."""
    w = [5, 7, 7, 7, 2]
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(9, 5)), rng.uniform(size=(9, 2))
    plain = symgrad.network(w, "tanh")
    p = symgrad.sample(plain, init="xavier", seed=2)
    rep = symgrad.report(plain, p, inputs=x, targets=y)
    # Both are ½ log10 of a ratio of sums of squares: a few ulps apart.
    np.testing.assert_allclose(plots._dense_measured(plain, dict(p, a0=x, y=y)), [l.log10_rms_ratio for l in rep.layers], rtol=0, atol=1e-13)
    res_net = symgrad.network(w, "tanh", residual=[None, 0.5, 0.5, None])
    d = symgrad.backprop(res_net, dict(p, a0=x, y=y)).deltas
    want = [0.5 * math.log10(np.sum(d[l] ** 2) / np.sum(d[-1] ** 2)) for l in range(4)]
    got = plots._dense_measured(res_net, dict(p, a0=x, y=y))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)
    assert abs(got[0] - rep.layers[0].log10_rms_ratio) > 1e-3


def test_gradient_flow_residual_chain_has_no_growth_rate_line():
    fig = plots.gradient_flow_figure(symgrad.chain(4, "tanh", residual=0.5), samples=5)
    assert not _lines(fig, "typical") and len(_line(fig, "measured-median")[1]) == 4


# --- 3. phase diagram -----------------------------------------------------------------------------


def test_phase_diagram_heat_map_critical_line_and_monte_carlo():
    w2, b2 = [0.5, 1.0, 2.0], [0.0, 0.3]
    fig = plots.phase_diagram_figure("tanh", w2, b2, monte_carlo=[(1.5, 0.1)], mc_width=40, mc_depth=4, mc_batch=4, seed=2)
    ax = fig.axes[0]
    (mesh,) = [c for c in ax.collections if c.get_gid() == "ln-chi1"]
    want = np.array([[math.log(meanfield.chi1("tanh", a, c).value) for a in w2] for c in b2])
    np.testing.assert_array_equal(np.asarray(mesh.get_array()).reshape(want.shape), want)
    x, y = _line(fig, "critical-line")
    assert y[0] == 0.0 and y[-1] == 0.3
    assert x[0] == 1.0  # tanh's exact critical σ_w² at σ_b² = 0
    np.testing.assert_array_equal(x, [v.value for v in meanfield.critical_line("tanh", list(y))])
    (pts,) = [c for c in ax.collections if c.get_gid() == "monte-carlo"]
    chk = symgrad.theory.montecarlo.check_wide_network("tanh", 1.5, 0.1, width=40, depth=4, batch=4, seed=2)
    assert pts.get_offsets().tolist() == [[1.5, 0.1]]
    assert np.asarray(pts.get_array()).tolist() == [math.log(chk.grad_ratio_measured[0]) / 3]
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "ordered" in texts and "chaotic" in texts
    assert "tanh" in ax.get_title() and "sigma" in ax.get_xlabel() + ax.get_ylabel()


def test_phase_diagram_grey_where_no_fixed_point():
    fig = plots.phase_diagram_figure("relu", [1.0, 3.0], [0.0, 0.5])
    arr = fig.axes[0].collections[0].get_array()
    assert bool(np.ma.getmaskarray(arr)[0, 1]) and not bool(np.ma.getmaskarray(arr)[0, 0])  # σ_w² = 3 > 2: q* = ∞


# --- 4. steep interval ----------------------------------------------------------------------------


def _brute_width(w: float, b: float) -> float:
    """The set {a : |w σ'(wa + b)| ≥ 1} found by root search: it is the interval around a = −b/w
    where |w|σ'(wa + b) − 1 ≥ 0; Brent's method (xtol 1e-15) on each side."""
    from scipy.optimize import brentq

    def f(a):
        u = w * a + b
        s = 1.0 / (1.0 + math.exp(-u))
        return abs(w) * s * (1.0 - s) - 1.0

    c = -b / w
    if f(c) < 0:
        return 0.0
    hi = brentq(f, c, c + 50.0 / abs(w), xtol=1e-15, rtol=8.9e-16)
    lo = brentq(f, c - 50.0 / abs(w), c, xtol=1e-15, rtol=8.9e-16)
    return hi - lo


@pytest.mark.parametrize("w, b", [(4.5, 0.0), (6.9, 1.3), (-10.0, 0.2), (25.0, -3.0), (3.9, 0.0)])
def test_steep_interval_closed_form_against_root_search(w, b):
    # Each root is found to ~1e-15 in a (slope |w|²|σ''| ≥ 0.1 at the roots for these w), so the
    # two widths differ by a few 1e-15; 1e-12 leaves a wide margin.
    assert abs(plots.steep_interval_width(w) - _brute_width(w, b)) <= 1e-12


def test_steep_interval_maximum_and_figure():
    w, width = plots.steep_interval_maximum()
    assert abs(w - 6.894) < 1e-3 and abs(width - 0.4477) < 1e-4  # Nielsen: ≈ 0.45 at |w| ≈ 6.9
    # A maximum: the closed form is lower on both sides.
    assert plots.steep_interval_width(w - 1e-3) < width and plots.steep_interval_width(w + 1e-3) < width
    grid = np.linspace(0, 12, 25)
    fig = plots.steep_interval_figure(grid)
    x, y = _line(fig, "width")
    assert np.array_equal(x, grid) and np.array_equal(y, plots.steep_interval_width(grid))
    assert np.all(y[grid < 4] == 0)
    assert _line(fig, "maximum")[1].tolist() == [width]


# --- 5. speed of learning -------------------------------------------------------------------------


def test_speed_of_learning_lines_equal_the_data():
    norms = {1: [0.012, 0.02, 0.0], 2: [0.06, 0.05], "output": [0.283, 0.2, 0.1]}
    fig = plots.speed_of_learning_figure(norms, title="digits [64, 30, 30, 10]")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_title() == "digits [64, 30, 30, 10]"
    assert [l.get_label() for l in ax.lines] == ["layer 1", "layer 2", "output"]
    x, y = _line(fig, "layer-1")
    assert x.tolist() == [0, 1, 2] and y[:2].tolist() == [0.012, 0.02] and math.isnan(y[2])  # a zero is a gap
    assert _line(fig, "layer-output")[1].tolist() == [0.283, 0.2, 0.1]


@pytest.mark.parametrize("norms", [{}, {1: []}, {1: [0.1, -1.0]}, {1: [math.inf]}, {1: [math.nan]}, [0.1], {1: "abc"}])
def test_speed_of_learning_bad_input(norms):
    with pytest.raises(InvalidArgument):
        plots.speed_of_learning_figure(norms)


# --- bad input, writing, the CLI ----------------------------------------------------------------


@pytest.mark.parametrize("grid, words", [([], "empty"), ([1.0], "1 value"), ([3, 2, 1], "reversed"), ([0, 2, 1], "does not increase"), ([0, 1, 1], "does not increase"),
                                          ([0, math.nan], "non-finite"), ([0, math.inf], "non-finite"), ([[0, 1]], "shape"),
                                          ("0,1", "increasing list")])
def test_bad_grids(grid, words):
    for call in (lambda: plots.activation_figure("tanh", grid), lambda: plots.steep_interval_figure(grid),
                 lambda: plots.phase_diagram_figure("tanh", grid, [0, 1])):
        with pytest.raises(InvalidArgument, match=words):
            call()


def test_other_bad_arguments():
    with pytest.raises(InvalidArgument, match="below its minimum"):
        plots.steep_interval_figure([-1, 1])
    with pytest.raises(InvalidArgument, match="saturation"):
        plots.activation_figure("tanh", saturation=1.5)
    with pytest.raises(InvalidArgument, match="needs a chain"):
        plots.gradient_flow_figure("sigmoid")
    with pytest.raises(InvalidArgument, match="band"):
        plots.gradient_flow_figure(symgrad.chain(2), band=(0.6, 0.9))
    with pytest.raises(InvalidArgument, match="pair"):
        plots.phase_diagram_figure("tanh", [1, 2], [0, 1], monte_carlo=[(1.0,)])
    with pytest.raises(InvalidArgument, match="unknown plot kind"):
        plots.plot_command("histogram", {})


@pytest.mark.parametrize("fmt", plots.FORMATS)
def test_written_figures_carry_the_marker(tmp_path, fmt):
    fig = plots.steep_interval_figure([0, 5, 10])
    path = tmp_path / ("s." + fmt)
    plots.write_figure(fig, path)
    assert is_symgrad_file(path)
    plots.write_figure(fig, path)  # symgrad's own file: replaced without --force
    assert plots.figure_bytes(fig, fmt) == plots.figure_bytes(fig, fmt)  # no dates: reproducible
    foreign = tmp_path / ("other." + fmt)
    foreign.write_bytes(plots.figure_bytes(fig, fmt).replace(b"generated by symgrad", b"generated by someone"))
    assert not is_symgrad_file(foreign)
    with pytest.raises(InvalidArgument, match="--force"):
        plots.write_figure(fig, foreign)
    assert b"someone" in foreign.read_bytes()
    plots.write_figure(fig, foreign, force=True)
    assert is_symgrad_file(foreign)


def test_write_refusals(tmp_path):
    fig = plots.steep_interval_figure([0, 5, 10])
    with pytest.raises(InvalidArgument, match=r"\.png, \.pdf or \.svg"):
        plots.write_figure(fig, tmp_path / "s.jpg")
    with pytest.raises(InvalidArgument, match="does not exist"):
        plots.write_figure(fig, tmp_path / "missing" / "s.png")
    (tmp_path / "d.png").mkdir()
    with pytest.raises(InvalidArgument, match="directory"):
        plots.write_figure(fig, tmp_path / "d.png")


def test_matplotlib_missing_names_the_extra(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(plots, "_FIGURE_CLASS", None)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(InvalidArgument, match=r"pip install 'symgrad\[plot\]'"):
        plots.steep_interval_figure()
    assert main(["plot", "steep-interval", "-o", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'symgrad[plot]'" in err


def test_jupyter_repr_and_good_neighbour():
    """A figure shows itself as PNG (Jupyter), and drawing one leaves pyplot unimported and the
    user's backend and rcParams as they were (run in a fresh interpreter)."""
    # rcParams are read with _get: reading 'backend' the ordinary way resolves it (importing pyplot).
    code = ("import matplotlib, sys; rc = lambda: [(k, repr(matplotlib.rcParams._get(k))) for k in matplotlib.rcParams.keys()]; "
            "before = rc(); from symgrad.render import plots; f = plots.steep_interval_figure([0, 5, 10]); "
            "png = f._repr_png_(); plots.figure_bytes(f, 'svg'); plots.figure_bytes(f, 'pdf'); "
            "print(png[:4] == b'\\x89PNG', 'matplotlib.pyplot' in sys.modules, rc() == before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False", "True"]


@pytest.mark.parametrize("argv", [
    ["activation", "--activation", "tanh", "--z=-3,3", "--points", "31"],
    ["activation", "--activation", "z*sigmoid(z)", "--points", "21"],
    ["gradient-flow", "--depth", "4", "--samples", "4"],
    ["gradient-flow", "--widths", "3,5,5,2", "--residual", "0.5", "--samples", "2", "--batch", "4", "--activation", "relu", "--init", "he"],
    ["phase-diagram", "--activation", "relu", "--sigma-w2", "0.5,1.5", "--sigma-b2", "0,0.5", "--points", "2"],
    ["steep-interval", "--w", "0,10", "--points", "11"],
])
def test_cli_writes_each_kind(tmp_path, argv, capsys):
    out = tmp_path / "fig.svg"
    assert main(["plot", *argv, "-o", str(out)]) == 0
    assert is_symgrad_file(out) and "wrote" in capsys.readouterr().err


def test_cli_speed_of_learning_from_json(tmp_path):
    data = tmp_path / "norms.json"
    data.write_text('{"1": [0.012, 0.02], "2": [0.06, 0.05]}')
    assert main(["plot", "speed-of-learning", "--data", str(data), "-o", str(tmp_path / "s.png")]) == 0
    data.write_text('{"1": [NaN]}')
    assert main(["plot", "speed-of-learning", "--data", str(data), "-o", str(tmp_path / "s.png")]) == 2


@pytest.mark.parametrize("argv, words", [
    (["plot", "histogram", "-o", "x.png"], "unknown plot kind"),
    (["plot", "activation"], "-o FILE.png"),
    (["plot", "activation", "-o", "x.gif"], ".png, .pdf or .svg"),
    (["plot", "activation", "--z", "2,1", "-o", "x.png"], "reversed"),
    (["plot", "activation", "--z", "1,1", "-o", "x.png"], "empty"),
    (["plot", "activation", "--z", "", "-o", "x.png"], "LO,HI"),
    (["plot", "activation", "--z", "0,inf", "-o", "x.png"], "not a finite number"),
    (["plot", "steep-interval", "--depth", "3", "-o", "x.png"], "does not take --depth"),
    (["plot", "gradient-flow", "--depth", "3", "--widths", "2,2", "-o", "x.png"], "conflict"),
    (["plot", "phase-diagram", "--monte-carlo", "1.5", "-o", "x.png"], "SIGMA_W2:SIGMA_B2"),
    (["plot", "speed-of-learning", "-o", "x.png"], "--data"),
    (["plot", "activation", "--activation", "nosuch", "-o", "x.png"], "unknown activation"),
    (["plot", "steep-interval", "-o", "/nonexistent-dir/x.png"], "does not exist"),
])
def test_cli_bad_input_exit_2_one_line(tmp_path, monkeypatch, capsys, argv, words):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # nothing written
