"""node/priority.py: bulk threads wait while a critical step runs, never for long."""

from __future__ import annotations

import threading
import time

import pytest

import node.priority as priority_module
from node.priority import Priority


def _yield_in_thread(priority: Priority) -> tuple[threading.Thread, list[float]]:
    waited: list[float] = []

    def bulk() -> None:
        started = time.monotonic()
        priority.yield_to()
        waited.append(time.monotonic() - started)

    thread = threading.Thread(target=bulk)
    thread.start()
    return thread, waited


def test_bulk_waits_for_the_critical_step_and_goes_on_after_it() -> None:
    priority = Priority()
    with priority.critical():
        with priority.critical():  # re-entrant; the owner never waits for itself
            priority.yield_to()
        assert priority.busy
        thread, waited = _yield_in_thread(priority)
        time.sleep(0.05)
        assert thread.is_alive()  # parked while the step runs
    thread.join(timeout=5)
    assert not priority.busy and waited and waited[0] >= 0.04
    thread, waited = _yield_in_thread(priority)  # nothing critical: no wait
    thread.join(timeout=5)
    assert waited[0] < 0.05


def test_a_long_critical_step_does_not_starve_bulk_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(priority_module, "MAX_PAUSE_S", 0.05)
    priority = Priority()
    with priority.critical():
        thread, waited = _yield_in_thread(priority)
        thread.join(timeout=5)
        assert not thread.is_alive() and 0.04 <= waited[0] < 1.0
    # Steps on two threads at once: clear only when both ended.
    inside, leave = threading.Event(), threading.Event()

    def other_step() -> None:
        with priority.critical():
            inside.set()
            leave.wait(5)

    other = threading.Thread(target=other_step)
    other.start()
    inside.wait(5)
    with priority.critical():
        pass
    assert priority.busy
    leave.set()
    other.join(timeout=5)
    assert not priority.busy
