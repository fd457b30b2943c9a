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

import symgrad.testing.pytest_plugin as plugin

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


try:  # the variables by which Hypothesis detects a CI service (and then loads its "ci" profile)
    from hypothesis._settings import _CI_VARS as _CI_ENV
except ImportError:  # pragma: no cover - another Hypothesis version
    _CI_ENV = {"CI": None, "GITHUB_ACTIONS": None, "GITLAB_CI": None, "TF_BUILD": None}


def _run_pytest(tmp_path, *args, env_extra=None, timeout=240):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k not in _CI_ENV}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout,
    )


def _plugin_installed() -> bool:
    return any(ep.value == "symgrad.testing.pytest_plugin" for ep in importlib.metadata.entry_points(group="pytest11"))


needs_entry_point = pytest.mark.skipif(
    not _plugin_installed(), reason="the pytest11 entry point is not installed: run pip install -e . again")


def test_plugin_is_registered_through_the_pytest11_entry_point():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '[project.entry-points.pytest11]\nsymgrad = "symgrad.testing.pytest_plugin"' in text


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
    code = "import sys, symgrad.testing.pytest_plugin; assert 'sympy' not in sys.modules and 'hypothesis' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_profiles_are_registered():
    from hypothesis import settings

    plugin.register_profiles()
    dev, ci = settings.get_profile("symgrad-dev"), settings.get_profile("symgrad-ci")
    assert dev.max_examples == 10 and dev.deadline is None
    assert ci.derandomize and ci.deadline is None and ci.print_blob


def test_one_marker_slow_is_registered_once(pytestconfig):
    """The suite and the plugin share one marker, ``slow``; the project's own line (pyproject)
    wins, and the plugin does not add a second one."""
    lines = [l for l in pytestconfig.getini("markers") if l.split(":", 1)[0].strip() in ("slow", "symbolic")]
    assert len(lines) == 1 and lines[0].startswith("slow:"), lines


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


# ---------------------------------------------------------------------------------------------
# A good neighbour: symgrad's profiles are opt-in, and never replace the project's own
# ---------------------------------------------------------------------------------------------

RECORDER = """\
import json, os
from hypothesis import settings

def test_record_the_settings_in_force():
    s = settings()
    with open(os.environ["SYMGRAD_RECORD"], "w") as f:
        json.dump({"profile": settings.get_current_profile_name(), "max_examples": s.max_examples,
                   "derandomize": s.derandomize}, f)
"""

USER_CONFTEST = """\
from hypothesis import settings

settings.register_profile("mine", max_examples=7, derandomize=False)
settings.load_profile("mine")
"""

MINE = {"profile": "mine", "max_examples": 7, "derandomize": False}
SYMGRAD_DEV = {"profile": "symgrad-dev", "max_examples": 10, "derandomize": False}
SYMGRAD_CI = {"profile": "symgrad-ci", "max_examples": 100, "derandomize": True}
HYPOTHESIS_CI = {"profile": "ci", "max_examples": 100, "derandomize": True}
HYPOTHESIS_DEFAULT = {"profile": "default", "max_examples": 100, "derandomize": False}


def _record(tmp_path, *args, conftest=None, ini="", env_extra=None):
    """Run a tmp project whose one test records the Hypothesis settings in force; return them."""
    import json

    (tmp_path / "pytest.ini").write_text("[pytest]\n" + ini, encoding="utf-8")
    (tmp_path / "test_record.py").write_text(RECORDER, encoding="utf-8")
    if conftest:
        (tmp_path / "conftest.py").write_text(conftest, encoding="utf-8")
    out = tmp_path / "settings.json"
    res = _run_pytest(tmp_path, *args, env_extra={"SYMGRAD_RECORD": str(out), **(env_extra or {})})
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(out.read_text(encoding="utf-8")), res.stdout


# (conftest, ini, extra pytest args, environment, expected settings)
NEIGHBOUR_CASES = {
    # The case: a project that never uses symgrad, its own profile, on a CI service.
    "own-profile-under-CI": (USER_CONFTEST, "", (), {"CI": "true"}, MINE),
    "own-profile-no-CI": (USER_CONFTEST, "", (), {}, MINE),
    # The same project with the plugin disabled, i.e. as if symgrad were not installed.
    "own-profile-under-CI-without-symgrad": (USER_CONFTEST, "", ("-p", "no:symgrad"), {"CI": "true"}, MINE),
    # No profile of its own: Hypothesis' own choice stands (its "ci" profile on CI), not symgrad's.
    "no-profile-under-CI": (None, "", (), {"CI": "true"}, HYPOTHESIS_CI),
    "no-profile": (None, "", (), {}, HYPOTHESIS_DEFAULT),
    # Opting in: the option, or the ini setting.
    "option-dev": (None, "", ("--symgrad-profile=dev",), {}, SYMGRAD_DEV),
    "option-ci": (None, "", ("--symgrad-profile=ci",), {}, SYMGRAD_CI),
    "ini-dev": (None, "symgrad_profile = dev\n", (), {"CI": "true"}, SYMGRAD_DEV),
    # The ini setting never replaces the profile the project's conftest loaded, nor --hypothesis-profile.
    "ini-vs-own-profile": (USER_CONFTEST, "symgrad_profile = ci\n", (), {"CI": "true"}, MINE),
    "ini-vs-hypothesis-profile": (None, "symgrad_profile = ci\n", ("--hypothesis-profile=default",), {}, HYPOTHESIS_DEFAULT),
    # Asking on the command line is explicit, and wins over the ini setting.
    "option-over-ini": (None, "symgrad_profile = ci\n", ("--symgrad-profile=dev",), {}, SYMGRAD_DEV),
}


@needs_entry_point
@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(NEIGHBOUR_CASES))
def test_symgrad_profiles_are_opt_in_and_never_replace_the_projects_own(tmp_path, case):
    conftest, ini, args, env, expected = NEIGHBOUR_CASES[case]
    got, stdout = _record(tmp_path, *args, conftest=conftest, ini=ini, env_extra=env)
    assert got == expected, (case, got, stdout)


@needs_entry_point
@pytest.mark.parametrize("args, ini, message", [
    (("--symgrad-profile=ci", "--hypothesis-profile=default"), "", "pass one of them"),
    ((), "symgrad_profile = fast\n", "symgrad_profile = 'fast': expected one of ci, dev"),
])
def test_conflicting_or_unknown_profile_choices_are_usage_errors(tmp_path, args, ini, message):
    (tmp_path / "pytest.ini").write_text("[pytest]\n" + ini, encoding="utf-8")
    res = _run_pytest(tmp_path, *args)
    assert res.returncode == 4 and message in res.stderr, res.stdout + res.stderr
    assert "Traceback" not in res.stderr


@needs_entry_point
def test_a_projects_own_slow_marker_is_kept(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: my own meaning\n", encoding="utf-8")
    res = _run_pytest(tmp_path, "--markers")
    slow = [l for l in res.stdout.splitlines() if l.startswith("@pytest.mark.slow")]
    assert slow == ["@pytest.mark.slow: my own meaning"], res.stdout


@needs_entry_point
@pytest.mark.parametrize("args, ini, header", [
    ((), "", "symgrad: hypothesis profile unchanged (opt in with --symgrad-profile=dev|ci"),
    (("--symgrad-profile=dev",), "", "symgrad: hypothesis profile symgrad-dev (--symgrad-profile=dev)"),
    ((), "symgrad_profile = ci\n", "symgrad: hypothesis profile symgrad-ci (symgrad_profile = ci (ini))"),
    (("--hypothesis-profile=default",), "symgrad_profile = ci\n",
     "symgrad: hypothesis profile unchanged: --hypothesis-profile=default wins over symgrad_profile = ci"),
])
def test_the_report_header_says_which_profile_and_why(tmp_path, args, ini, header):
    (tmp_path / "pytest.ini").write_text("[pytest]\n" + ini, encoding="utf-8")
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n", encoding="utf-8")
    res = _run_pytest(tmp_path, "-v", *args)   # -v cancels -q: the header is printed
    assert res.returncode == 0 and header in res.stdout, res.stdout + res.stderr
