"""Run independent pieces of work in this process or in several, with one progress bar."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator


def run_jobs(
    fn: Callable, work: Iterable, jobs: int = 1, *, desc: str, unit: str, progress: bool = True,
    initializer: Callable | None = None, initargs: tuple = (),
) -> None:
    """Call ``fn(item)`` for every item, in ``jobs`` spawned processes when ``jobs`` > 1 (in no set order;
    ``fn`` and ``initializer`` must be importable module-level functions), else here, in order.
    ``initializer(*initargs)`` runs once per process first, as for ``multiprocessing.Pool``."""
    import multiprocessing

    from tqdm.auto import tqdm

    work = list(work)
    with tqdm(total=len(work), desc=desc, unit=unit, disable=not progress) as bar:
        if jobs > 1:
            with multiprocessing.get_context("spawn").Pool(jobs, initializer=initializer, initargs=initargs) as pool:
                for _ in pool.imap_unordered(fn, work):
                    bar.update()
            return
        if initializer is not None:
            initializer(*initargs)
        for item in work:
            fn(item)
            bar.update()


_DONE = object()


def in_background(items: Iterable, depth: int = 1) -> Iterator:
    """Iterate ``items`` in a thread of its own, at most ``depth`` items ahead of the caller: two stages
    joined by a bounded queue run at once (torch, OpenCV and FFmpeg release the GIL), and memory stays
    bounded. An error in the thread is raised here; closing this iterator stops the thread.
    Hand-written because the standard library's executors run calls, not a generator with back-pressure."""
    import queue
    import threading

    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as err:  # handed to the caller, who raises it
            put((_DONE, err))
            return
        put((_DONE, None))

    thread = threading.Thread(target=work, daemon=True, name="keysync-stage")
    thread.start()
    try:
        while True:
            item, err = out.get()
            if item is _DONE:
                if err is not None:
                    raise err
                return
            yield item
    finally:
        stop.set()
        thread.join()


def exempt_loaded_objects() -> None:
    """Take every object alive now (the imported libraries, a loaded model) out of the garbage collector's
    full passes. For a process that dubs, called once after loading: a full pass walks them all (about 450
    thousand objects once torch and diffusers are imported) holding the GIL for about 0.25 s, which stalls
    every stage's thread, and one came in the middle of each dub's face tracking. Reference counting still
    frees these objects (a pipeline dropped for another model is freed: it holds no reference cycles); only
    cycles among them are never collected, which is why the library leaves this to the program that runs it."""
    import gc

    gc.freeze()


def leave_a_core() -> None:
    """Keep this process (and the threads it starts) off one of the cores it may run on, where it has more
    than one: for a helper process beside a main one whose single thread is on the critical path (the demo
    renders and tracks while the main process imports torch and diffusers, one thread's work, and the
    renderer's tracker and video encoder would otherwise spread over both of two cores). Linux only; elsewhere
    nothing changes."""
    import os

    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) > 1:
            os.sched_setaffinity(0, cores[1:])
