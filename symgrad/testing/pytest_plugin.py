"""symgrad's pytest plugin, registered through the ``pytest11`` entry point.

It is a good neighbour: installed in a project that never asks for it, it changes no setting.
It adds:

* Hypothesis profiles ``symgrad-dev`` (fast: 10 examples, no deadline) and ``symgrad-ci``
  (derandomized, no deadline, prints the ``@reproduce_failure`` blob, 100 examples), registered
  but **never loaded unless asked for**: ``--symgrad-profile=dev|ci`` on the command line, or
  ``symgrad_profile = dev|ci`` in the ini file (``[tool.pytest.ini_options]``, ``pytest.ini``).
  The environment (``CI=true``) chooses nothing.  A profile the project loaded itself (in a
  ``conftest.py``) is never replaced by the ini setting, and ``--hypothesis-profile`` wins over
  it; ``--symgrad-profile`` together with ``--hypothesis-profile`` is a usage error;
* the marker ``slow`` (tests that take more than a second, e.g. symbolic SymPy work): deselect
  them with ``-m "not slow"``.  It is registered only if the project has not registered its own;
* fixtures: ``symgrad_net`` (a factory for networks that takes ``depth``/``widths``,
  ``activation`` and ``loss`` from the current test's ``@pytest.mark.parametrize`` values) and
  ``symgrad_gradients`` (a session-wide cache of closed-form gradients, so that symbolic work
  is done once, outside ``@given``);
* a ``pytest_runtest_makereport`` hook that keeps a failing Hypothesis example readable under
  ``filterwarnings = error`` (see its docstring).

Importing this module is cheap: SymPy, NumPy and Hypothesis are imported inside the hooks and
fixtures that need them, never at module level.  (Note that the entry point
``symgrad.testing.pytest_plugin`` imports the package ``symgrad`` first, which imports SymPy.)
"""

from __future__ import annotations

import pytest

PROFILES = {"dev": "symgrad-dev", "ci": "symgrad-ci"}
MARKER = "slow"
_NETWORK_KEYS = ("depth", "widths", "activation", "loss")


def pytest_addoption(parser):
    group = parser.getgroup("symgrad")
    group.addoption(
        "--symgrad-profile",
        action="store",
        choices=sorted(PROFILES),
        default=None,
        help="load symgrad's Hypothesis profile: 'dev' (fast, 10 examples) or 'ci' (derandomized, "
             "no deadline, prints reproduction blobs). Default: none (Hypothesis' settings are left alone).",
    )
    parser.addini(
        "symgrad_profile",
        help="symgrad's Hypothesis profile to load, 'dev' or 'ci' (default: none). A profile loaded "
             "by the project's conftest.py, or --hypothesis-profile, takes precedence.",
        default="",
    )


def register_profiles():
    """Register ``symgrad-dev`` and ``symgrad-ci`` with Hypothesis (idempotent).  Registering a
    profile does not load it: the settings in force do not change.  Both derive from Hypothesis'
    ``default`` profile, not from whatever is loaded now (a project's profile, or Hypothesis'
    automatic ``ci``), so that they mean the same everywhere."""
    from hypothesis import HealthCheck, settings

    base = settings.get_profile("default")
    settings.register_profile("symgrad-dev", base, max_examples=10, deadline=None)
    settings.register_profile(
        "symgrad-ci",
        base,
        max_examples=100,
        derandomize=True,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )


def _loaded_by_the_project() -> str | None:
    """The Hypothesis profile the project loaded itself (e.g. in its root conftest.py, which
    pytest imports before ``pytest_configure``), or None if only Hypothesis' own choice is in
    force: ``default``, or ``ci``, which Hypothesis loads by itself when it detects a CI service."""
    from hypothesis import settings

    try:
        from hypothesis._settings import is_in_ci
    except ImportError:  # a Hypothesis without its automatic "ci" profile
        def is_in_ci():
            return False
    name = settings.get_current_profile_name()
    if name == "default" or (name == "ci" and is_in_ci()):
        return None
    return name


def _chosen_profile(config):
    """(profile to load or None, why) from the option, then the ini setting; never the environment."""
    opt = config.getoption("--symgrad-profile", default=None)
    theirs = config.getoption("--hypothesis-profile", default=None)
    if opt is not None:
        if theirs:
            raise pytest.UsageError("--symgrad-profile=%s and --hypothesis-profile=%s both choose a Hypothesis "
                                    "profile; pass one of them" % (opt, theirs))
        return PROFILES[opt], "--symgrad-profile=%s" % opt
    ini = (config.getini("symgrad_profile") or "").strip()
    if not ini:
        return None, "unchanged (opt in with --symgrad-profile=dev|ci or the ini setting symgrad_profile)"
    if ini not in PROFILES:
        raise pytest.UsageError("ini setting symgrad_profile = %r: expected one of %s (or leave it unset)"
                                % (ini, ", ".join(sorted(PROFILES))))
    if theirs:
        return None, "unchanged: --hypothesis-profile=%s wins over symgrad_profile = %s" % (theirs, ini)
    project = _loaded_by_the_project()
    if project is not None:
        return None, "unchanged: the project loaded %r, which wins over symgrad_profile = %s" % (project, ini)
    return PROFILES[ini], "symgrad_profile = %s (ini)" % ini


def _marker_registered(config, name) -> bool:
    return any(line.split(":", 1)[0].split("(", 1)[0].strip() == name for line in config.getini("markers"))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # Registered first, so that --hypothesis-profile=symgrad-ci works too; registering loads nothing.
    register_profiles()
    if not _marker_registered(config, MARKER):
        config.addinivalue_line("markers", "%s: a test that takes more than a second (e.g. symbolic SymPy work); "
                                           "deselect with -m 'not %s'" % (MARKER, MARKER))
    profile, why = _chosen_profile(config)
    config._symgrad_profile = profile
    config._symgrad_profile_why = why
    if profile is not None:
        from hypothesis import settings

        settings.load_profile(profile)


def pytest_report_header(config):
    profile = getattr(config, "_symgrad_profile", None)
    why = getattr(config, "_symgrad_profile_why", "")
    if profile is None:
        return "symgrad: hypothesis profile %s" % why
    return "symgrad: hypothesis profile %s (%s)" % (profile, why)


@pytest.fixture(scope="session")
def symgrad_gradients():
    """A session-wide cache: ``symgrad_gradients(net, name)`` is ``net.gradient(name)``, derived
    once per (network, name) however many tests and examples ask for it.

    Networks are keyed by their ``repr`` (depth or widths, activation and loss)."""
    cache: dict = {}

    def get(net, name: str):
        key = (repr(net), name)
        if key not in cache:
            cache[key] = net.gradient(name)
        return cache[key]

    get.cache = cache
    return get


@pytest.fixture
def symgrad_net(request):
    """A factory for the network of the current test.

    ``symgrad_net()`` reads ``depth`` (a chain) or ``widths`` (a dense network), ``activation`` and
    ``loss`` from the test's ``@pytest.mark.parametrize`` values; keyword arguments override them.
    The default is a depth-3 sigmoid chain with the quadratic loss.  Networks are cached per
    arguments for the session.

    >>> # @pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
    >>> # def test_decay(symgrad_net):
    >>> #     net = symgrad_net(depth=4)          # chain(4, activation)
    """
    from symgrad.errors import InvalidArgument
    from symgrad.symbolic.build import chain, network

    params = getattr(getattr(request.node, "callspec", None), "params", {})
    base = {k: params[k] for k in _NETWORK_KEYS if k in params}
    store = request.config.__dict__.setdefault("_symgrad_nets", {})

    def make(**overrides):
        unknown = sorted(set(overrides) - set(_NETWORK_KEYS))
        if unknown:
            raise InvalidArgument("symgrad_net: unknown arguments %s; known: %s" % (unknown, ", ".join(_NETWORK_KEYS)))
        spec = {**base, **overrides}
        if "depth" in spec and "widths" in spec:
            raise InvalidArgument("symgrad_net: give depth (a chain) or widths (a dense network), not both: %r" % (spec,))
        act, loss = spec.get("activation", "sigmoid"), spec.get("loss", "quadratic")
        key = repr(sorted((k, repr(v)) for k, v in spec.items()))
        if key not in store:
            if "widths" in spec:
                store[key] = network(list(spec["widths"]), act, loss)
            else:
                store[key] = chain(spec.get("depth", 3), act, loss)
        return store[key]

    return make


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Before Hypothesis reports a failing example, import its patch writer with warnings
    silenced.  Under ``filterwarnings = error`` (symgrad's own setting) that import's
    DeprecationWarning (from libcst's dependencies) would otherwise turn a readable test
    failure into a pytest INTERNALERROR that hides the falsifying example."""
    import sys

    if call.excinfo is None or "hypothesis" not in sys.modules or "hypothesis.extra._patching" in sys.modules:
        return None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import hypothesis.extra._patching  # noqa: F401
        except ImportError:
            pass
    return None
