"""``in_background``: the stage joins that let a dub decode, sample and paste at once."""

import threading

import pytest

from keysync.parallel import in_background, leave_a_core


def test_the_producer_works_ahead_of_the_consumer_by_at_most_depth():
    made, handed = [], []
    consumer_has = threading.Event()

    def produce():
        for i in range(6):
            made.append(i)
            yield i

    items = in_background(produce(), depth=2)
    first = next(items)
    consumer_has.set()
    # while the caller holds item 0 the thread goes on: items 1, 2 wait in the queue, 3 is made and blocked
    for _ in range(200):
        if len(made) == 4:
            break
        threading.Event().wait(0.01)
    assert first == 0 and made == [0, 1, 2, 3]
    handed = [first, *items]
    assert handed == list(range(6))


def test_an_error_in_the_stage_reaches_the_caller():
    def produce():
        yield 1
        raise ValueError("bad window")

    items = in_background(produce())
    assert next(items) == 1
    with pytest.raises(ValueError, match="bad window"):
        next(items)


def test_closing_stops_the_thread():
    before = threading.active_count()
    items = in_background(iter(range(1000)), depth=1)
    next(items)
    items.close()
    assert threading.active_count() == before


@pytest.mark.parametrize("cores, kept", [({0, 1}, [1]), ({2, 5, 7, 9}, [5, 7, 9]), ({3}, None)])
def test_a_helper_process_leaves_one_of_its_cores(monkeypatch, cores, kept):
    """``leave_a_core`` keeps the process off its first core where it may run on several, and changes
    nothing where it has one."""
    import os

    asked = []
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(cores), raising=False)
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, mask: asked.append((pid, list(mask))), raising=False)
    leave_a_core()
    assert asked == ([] if kept is None else [(0, kept)])
