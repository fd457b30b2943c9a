"""The pytest plugin: entry point, cheap import, profiles, option, marker, fixtures, and the
README's user test file run the way a user would run it."""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import re
import subprocess
import sys

import pytest

import symgrad.pytest_plugin as plugin

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START, END = "<!-- user-test-example:start -->", "<!-- user-test-example:end -->"

def user_example() -> str:
    """The README's example between the markers (in a ```python fence)."""
    text = README.read_text(encoding="utf-8")
    assert START in text and END in text, "README.md lost the user test example markers"
    block = text.split(START, 1)[1].split(END, 1)[0]
    m = re.search(r"```python\n(.*?)```", block, re.S)
    assert m, "README.md: the user test example between the markers must be a ```python block"
    return m.group(1)


def _run_pytest(tmp_path, *args, env_extra=None, timeout=240):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k != "CI"}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout,
    )


def _plugin_installed() -> bool:
    return any(ep.value == "symgrad.pytest_plugin" for ep in importlib.metadata.entry_points(group="pytest11"))


needs_entry_point = pytest.mark.skipif(
    not _plugin_installed(), reason="the pytest11 entry point is not installed: run pip install -e . again")


def test_plugin_is_registered_through_the_pytest11_entry_point():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '[project.entry-points.pytest11]\nsymgrad = "symgrad.pytest_plugin"' in text


def test_loading_the_plugin_module_imports_neither_sympy_nor_hypothesis():
    """The module itself (executed standalone, without the ``symgrad`` package) stays cheap."""
    code = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('symgrad_plugin_alone', %r)\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "heavy = sorted(m for m in ('sympy', 'hypothesis', 'numpy', 'symgrad') if m in sys.modules)\n"
        "assert not heavy, heavy\n" % plugin.__file__
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_importing_the_entry_point_does_not_import_sympy():
    """pytest imports the package before the plugin module: symgrad/__init__ must stay lazy."""
    code = "import sys, symgrad.pytest_plugin; assert 'sympy' not in sys.modules and 'hypothesis' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_profiles_are_registered():
    from hypothesis import settings

    plugin.register_profiles()
    dev, ci = settings.get_profile("symgrad-dev"), settings.get_profile("symgrad-ci")
    assert dev.max_examples == 10 and dev.deadline is None
    assert ci.derandomize and ci.deadline is None and ci.print_blob


def test_symbolic_marker_is_registered(pytestconfig):
    assert any(line.startswith("symbolic:") for line in pytestconfig.getini("markers"))


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
@pytest.mark.parametrize("depth", [2, 5])
def test_network_factory_uses_the_tests_parameters(symgrad_net, activation, depth):
    net = symgrad_net()
    assert (net.depth, net.activation.name) == (depth, activation)
    assert symgrad_net() is net  # cached
    assert symgrad_net(activation="relu").activation.name == "relu"  # keywords override


def test_gradient_cache_derives_once(symgrad_gradients):
    import symgrad

    net = symgrad.chain(4)
    assert symgrad_gradients(net, "b1") is symgrad_gradients(symgrad.chain(4), "b1")


@needs_entry_point
@pytest.mark.slow
def test_readme_user_example_passes_the_way_a_user_runs_it(tmp_path):
    (tmp_path / "test_my_gradients.py").write_text(user_example(), encoding="utf-8")
    res = _run_pytest(tmp_path, "--symgrad-profile=dev")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "7 passed" in res.stdout


@needs_entry_point
@pytest.mark.slow
def test_ci_environment_selects_the_ci_profile(tmp_path):
    (tmp_path / "test_profile.py").write_text(
        "from hypothesis import settings\n"
        "def test_profile():\n"
        "    assert settings.default.derandomize and settings.default.deadline is None\n"
        "    assert settings.default.print_blob\n",
        encoding="utf-8",
    )
    res = _run_pytest(tmp_path, env_extra={"CI": "true"})
    assert res.returncode == 0, res.stdout + res.stderr
    res = _run_pytest(tmp_path, "--symgrad-profile=dev")
    assert res.returncode == 1, res.stdout + res.stderr  # dev is not derandomized


@needs_entry_point
def test_profile_option_rejects_unknown_names(tmp_path):
    res = _run_pytest(tmp_path, "--symgrad-profile=fast")
    assert res.returncode != 0 and "invalid choice: 'fast'" in res.stderr


@needs_entry_point
@pytest.mark.slow
def test_a_failing_property_reports_the_example_and_blob_under_filterwarnings_error(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings = error\n", encoding="utf-8")
    (tmp_path / "test_fails.py").write_text(
        "from hypothesis import given, strategies as st\n"
        "@given(st.integers())\n"
        "def test_small(x):\n"
        "    assert x < 10\n",
        encoding="utf-8",
    )
    res = _run_pytest(tmp_path, "--symgrad-profile=ci")
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    assert "INTERNALERROR" not in out and "x=10" in out and "@reproduce_failure(" in out
