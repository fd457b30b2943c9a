"""Enforced time budgets for symbolic computations that can blow up.

SymPy's ``maximum``, ``solveset``, ``simplify``, ``diff`` of a deep composition and the printers
have no time limit of their own.  :func:`within_budget` runs one such call under a deadline that
is *enforced*, not merely checked before starting:

* in the main thread of a Unix process, by a ``SIGALRM`` timer (``signal.setitimer``): SymPy is
  pure Python, so the alarm interrupts it between bytecodes.  The caller's own alarm handler and
  timer, if any, are restored afterwards (and an outer deadline that falls due first still wins);
* elsewhere (another thread, or a platform without ``setitimer``), in a forked child process that
  is killed at the deadline; the result comes back pickled.  Where neither is possible the budget
  cannot be enforced and the call reports ``BudgetExceeded`` at once rather than risk a hang.

Deep recursion is part of the same budget: ``RecursionError`` (SymPy recurses on tree depth) is
reported as :class:`BudgetExceeded` too, with the reason, and the recursion limit is raised for
the duration of the call only.

>>> within_budget(lambda: 1 + 1, seconds=1.0, what="a sum")
2
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, TypeVar

from symgrad.errors import BudgetExceeded, InvalidArgument

__all__ = ["BudgetExceeded", "within_budget", "DEFAULT_SECONDS"]

T = TypeVar("T")

#: Default budget of one symbolic computation, in seconds.
DEFAULT_SECONDS = 20.0
#: Recursion limit used inside a budgeted call (SymPy recurses once per level of a deep tree).
_RECURSION_LIMIT = 20_000


class _Alarm(BaseException):
    """Raised by the SIGALRM handler.  A BaseException, so that SymPy's ``except Exception``
    clauses do not swallow it."""


@contextmanager
def _raised_recursion_limit():
    old = sys.getrecursionlimit()
    if old < _RECURSION_LIMIT:
        sys.setrecursionlimit(_RECURSION_LIMIT)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def _can_alarm() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


#: After the deadline the alarm repeats at this interval until the call has stopped: an
#: exception raised while Python runs a garbage-collector callback or a ``__del__`` is printed
#: and dropped ("Exception ignored in ..."), so a single alarm can be lost.
_REPEAT = 0.05


def _run_with_alarm(fn: Callable[[], T], seconds: float, what: str) -> T:
    token = object()
    state = {"active": True}

    def handler(signum, frame):
        if state["active"]:
            raise _Alarm(token)

    # An alarm that lands in a gc callback is dropped by Python and reported as "Exception
    # ignored" (pytest turns that into an error): our own dropped alarms are not news, since the
    # repeat delivers the next one, so they are filtered out for the window; everything else
    # reaches the hook that was in force.
    old_hook = sys.unraisablehook

    def hook(unraisable):
        exc = unraisable.exc_value
        if isinstance(exc, _Alarm) and exc.args and exc.args[0] is token:
            return
        old_hook(unraisable)

    sys.unraisablehook = hook
    old_handler = signal.signal(signal.SIGALRM, handler)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, 0)
    start = time.monotonic()
    # An outer deadline that falls due first stays in charge.
    outer_first = 0 < old_delay < seconds
    signal.setitimer(signal.ITIMER_REAL, old_delay if outer_first else seconds, _REPEAT)
    try:
        try:
            with _raised_recursion_limit():
                return fn()
        finally:
            state["active"] = False  # later ticks, until the timer is cleared below, do nothing
    except _Alarm as exc:
        if exc.args and exc.args[0] is token:
            # (When the caller's own deadline fell due first, its timer is re-armed below and
            # its handler runs as soon as this returns.)
            raise BudgetExceeded("%s ran past its budget of %g s" % (what, seconds)) from None
        raise
    except RecursionError:
        raise BudgetExceeded("%s recursed deeper than %d levels" % (what, _RECURSION_LIMIT)) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        sys.unraisablehook = old_hook
        if old_delay > 0:
            remaining = old_delay - (time.monotonic() - start)
            # Re-arm the caller's timer; one already due fires at once.
            signal.setitimer(signal.ITIMER_REAL, max(remaining, 1e-6), old_interval)


def _run_in_child(fn: Callable[[], T], seconds: float, what: str) -> T:
    import multiprocessing as mp
    import pickle

    try:
        ctx = mp.get_context("fork")
    except ValueError:
        raise BudgetExceeded("%s: no way to enforce a time budget on this platform off the main thread" % what) from None
    recv, send = ctx.Pipe(duplex=False)

    def child():
        try:
            with _raised_recursion_limit():
                out = ("ok", fn())
        except RecursionError:
            out = ("budget", "%s recursed deeper than %d levels" % (what, _RECURSION_LIMIT))
        except BaseException as exc:  # noqa: BLE001 - sent back to the parent and re-raised there
            out = ("error", exc)
        try:
            send.send_bytes(pickle.dumps(out))
        except Exception as exc:  # noqa: BLE001 - an unpicklable result
            send.send_bytes(pickle.dumps(("budget", "%s: its result could not be sent back (%s)" % (what, type(exc).__name__))))
        finally:
            os._exit(0)

    proc = ctx.Process(target=child, daemon=True)
    proc.start()
    send.close()
    try:
        if not recv.poll(seconds):
            raise BudgetExceeded("%s ran past its budget of %g s" % (what, seconds))
        kind, value = pickle.loads(recv.recv_bytes())  # our own child's bytes, never a user's file
    except EOFError:
        raise BudgetExceeded("%s: the worker process died" % what) from None
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(1.0)
        recv.close()
    if kind == "ok":
        return value
    if kind == "budget":
        raise BudgetExceeded(value)
    raise value


def within_budget(fn: Callable[[], T], *, seconds: float = DEFAULT_SECONDS, what: str = "the computation") -> T:
    """Return ``fn()``, or raise :class:`BudgetExceeded` if it runs longer than ``seconds``
    (wall clock) or recurses too deep.

    ``what`` names the computation in the reason (``"SymPy's maximum of φ'"``).  Exceptions that
    ``fn`` raises itself propagate unchanged.

    >>> within_budget(lambda: sum(range(10)), seconds=0.5, what="a sum")
    45
    """
    if isinstance(seconds, bool) or not (isinstance(seconds, (int, float)) and 0 < seconds < 1e6):
        raise InvalidArgument("seconds=%r must be a positive number of seconds below 1e6, e.g. seconds=10" % (seconds,))
    if _can_alarm():
        return _run_with_alarm(fn, float(seconds), what)
    return _run_in_child(fn, float(seconds), what)
