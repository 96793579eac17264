"""Run independent pieces of work in this process or in several, with one progress bar."""

from __future__ import annotations

from typing import Callable, Iterable


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
