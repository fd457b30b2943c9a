"""The time budget of symbolic computations is enforced, and it is a good neighbour."""

from __future__ import annotations

import signal
import sys
import threading
import time

import pytest

import symgrad
from symgrad._budget import within_budget
from symgrad.errors import BudgetExceeded


def _spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:  # pure Python: the alarm interrupts it between bytecodes
        pass
    return "finished"


def test_a_call_within_its_budget_returns_its_value():
    assert within_budget(lambda: 6 * 7, seconds=5, what="a product") == 42


def test_a_call_past_its_budget_is_interrupted_and_names_what_ran():
    start = time.monotonic()
    with pytest.raises(BudgetExceeded, match="the spin ran past its budget of 0.2 s") as info:
        within_budget(lambda: _spin(30), seconds=0.2, what="the spin")
    assert time.monotonic() - start < 10  # interrupted, not run to the end (30 s)
    assert "0.2 s" in info.value.reason


def test_exceptions_of_the_call_itself_propagate_unchanged():
    with pytest.raises(ZeroDivisionError):
        within_budget(lambda: 1 / 0, seconds=5)


def test_deep_recursion_is_reported_as_a_budget_and_the_limit_is_restored():
    def down(n):
        return down(n + 1)

    before = sys.getrecursionlimit()
    with pytest.raises(BudgetExceeded, match="recursed deeper"):
        within_budget(lambda: down(0), seconds=30, what="the descent")
    assert sys.getrecursionlimit() == before


def test_the_callers_alarm_handler_and_timer_are_restored():
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 5.0)
        within_budget(lambda: None, seconds=1)
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 3.0 < remaining <= 5.0  # the caller's timer is re-armed with what was left
        assert signal.getsignal(signal.SIGALRM) is not None and not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_an_outer_deadline_due_first_still_fires():
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(BudgetExceeded):
            within_budget(lambda: _spin(30), seconds=20)
        _spin(0.1)
        assert fired == [1]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_off_the_main_thread_the_budget_is_enforced_in_a_child_process():
    out = {}

    def worker():
        try:
            within_budget(lambda: _spin(30), seconds=0.5, what="the threaded spin")
        except BudgetExceeded as exc:
            out["reason"] = exc.reason
        out["value"] = within_budget(lambda: 6 * 7, seconds=10)

    t = threading.Thread(target=worker)
    t.start()
    t.join(60)
    assert out == {"reason": "the threaded spin ran past its budget of 0.5 s", "value": 42}


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf"), 1e9, True, "1", None])
def test_the_budget_itself_is_validated(seconds):
    with pytest.raises(ValueError, match="positive number"):
        within_budget(lambda: 1, seconds=seconds)


def test_gradient_doit_of_a_very_deep_chain_answers_within_its_budget():
    """SymPy's canonical product of 200,000 factors takes about 35 s: the budget stops it."""
    g = symgrad.chain(100_000).gradient("b1")
    start = time.monotonic()
    with pytest.raises(symgrad.BudgetExceeded, match=r"doit\(\) of ∂C/∂b1 ran past its budget of 0.5 s"):
        g.doit(seconds=0.5)
    assert time.monotonic() - start < 20
    assert symgrad.chain(2).gradient("b2").doit(seconds=None) == symgrad.chain(2).gradient("b2").doit()


def test_an_alarm_lost_inside_a_garbage_collector_callback_is_repeated(monkeypatch):
    """Python drops an exception raised in a gc callback ("Exception ignored in ..."); the alarm
    repeats until the computation has stopped, so the budget still holds, and the dropped alarm
    is not reported to the unraisable hook in force (pytest makes such reports errors)."""
    import gc

    reported = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: reported.append(info.exc_type))
    interrupted = []

    def slow_callback(phase, info):
        if phase == "start" and not interrupted:  # the first collection outlasts the deadline
            try:
                _spin(0.5)
            except BaseException as exc:  # the alarm, raised here and then dropped by Python
                interrupted.append(type(exc).__name__)
                raise

    gc.callbacks.append(slow_callback)
    try:
        start = time.monotonic()
        with pytest.raises(BudgetExceeded):
            within_budget(lambda: (gc.collect(), _spin(20)), seconds=0.1, what="a collection, then work")
    finally:
        gc.callbacks.remove(slow_callback)
    assert time.monotonic() - start < 10  # the work after the collection would take 20 s
    assert interrupted == ["_Alarm"]  # the first alarm really was lost inside the callback
    assert reported == []  # and it was not reported as an unraisable exception
    assert sys.unraisablehook is not None
