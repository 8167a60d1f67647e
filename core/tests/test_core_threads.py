"""Thread safety: subscribe/unsubscribe from many threads while others emit."""

from __future__ import annotations

import threading

from aperion_bus import Event, EventBus


def test_concurrent_subscribe_unsubscribe_and_emit() -> None:
    errors: list[BaseException] = []
    stop = threading.Event()
    with EventBus() as bus:
        stable_calls: list[str] = []
        lock = threading.Lock()

        def stable(event: Event) -> None:
            with lock:
                stable_calls.append(event.event_id)

        bus.subscribe(stable, "load.*")

        def churn() -> None:
            try:
                while not stop.is_set():
                    ids = [bus.subscribe(lambda e: None, ["load.*", "*"]) for _ in range(20)]
                    for i in ids:
                        assert bus.unsubscribe(i)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        emitted: list[str] = []
        emitted_lock = threading.Lock()

        def emitter(n: int) -> None:
            try:
                for _ in range(n):
                    eid = bus.emit("load.event", {}, wait_for_handlers=True)
                    with emitted_lock:
                        emitted.append(eid)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        churners = [threading.Thread(target=churn) for _ in range(3)]
        emitters = [threading.Thread(target=emitter, args=(3000,)) for _ in range(3)]
        for t in churners + emitters:
            t.start()
        for t in emitters:
            t.join()
        stop.set()
        for t in churners:
            t.join()
    assert errors == []
    # the subscription that existed before every emit began was called by every one of them
    assert sorted(stable_calls) == sorted(emitted)
    assert len(emitted) == 9000
