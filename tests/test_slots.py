"""Fetch slots: never more holders than slots, every slot used, waiters all served."""

from __future__ import annotations

import threading
import time

import pytest

from obs_sync.engine.slots import FetchSlots


@pytest.mark.parametrize("use_eventfd", [True, False], ids=["eventfd", "semaphore"])
def test_at_most_count_threads_hold_a_slot_and_every_waiter_gets_one(use_eventfd: bool) -> None:
    slots = FetchSlots(3, use_eventfd=use_eventfd)
    lock = threading.Lock()
    inside = peak = done = 0

    def hold() -> None:
        nonlocal inside, peak, done
        for _ in range(20):
            with slots:
                with lock:
                    inside += 1
                    peak = max(peak, inside)
                time.sleep(0.001)  # (so that holders overlap and others must wait)
                with lock:
                    inside -= 1
            with lock:
                done += 1

    threads = [threading.Thread(target=hold) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    slots.close()
    assert not any(thread.is_alive() for thread in threads)
    assert done == 8 * 20
    assert peak == 3


@pytest.mark.parametrize("use_eventfd", [True, False], ids=["eventfd", "semaphore"])
def test_a_slot_is_given_back_when_the_holder_raises(use_eventfd: bool) -> None:
    slots = FetchSlots(1, use_eventfd=use_eventfd)
    with pytest.raises(RuntimeError), slots:
        raise RuntimeError("fetch failed")
    acquired = threading.Event()

    def take() -> None:
        with slots:
            acquired.set()

    thread = threading.Thread(target=take)
    thread.start()
    thread.join(10)
    slots.close()
    assert acquired.is_set()


def test_zero_slots_is_refused() -> None:
    with pytest.raises(ValueError, match="count 0"):
        FetchSlots(0)


def test_a_refused_eventfd_falls_back_to_the_semaphore(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> int:
        raise PermissionError("eventfd refused by the sandbox")

    monkeypatch.setattr("os.eventfd", refuse, raising=False)
    slots = FetchSlots(2)
    with slots, slots:  # both slots, no wait
        pass
    slots.close()
