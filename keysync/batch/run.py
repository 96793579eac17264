"""One batch run: read and check the manifest, skip what the journal says is done, hand the rest to the
workers one job at a time, move each finished output into OUT_DIR, and sum up."""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from collections import Counter, deque
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import KeySyncError
from .journal import Journal
from .manifest import DubRules, InvalidRow, Job, read_manifest


@dataclass
class BatchRequest:
    manifest: str
    out_dir: str
    run_dir: str | None = None  # default: OUT_DIR.keysync-batch beside OUT_DIR
    model: str | None = None  # for rows without a model column
    dtype: str = "float32"
    compile: bool = False  # each worker compiles its networks once (KeySyncPipeline.compile)
    fp8: str | None = None  # "on" or "emulate": each worker's networks multiply in FP8 (KeySyncPipeline.fp8)
    workers: int | None = None
    devices: str | None = None  # "cpu", or GPU indices "0,1"
    ray: str | None = None  # None: local processes; "": a Ray cluster from the environment or a new local one
    worker_cpus: int = 1  # per Ray actor without a GPU
    retries: int = 1
    split_long: float | None = None  # seconds: a longer video is dubbed in pieces by several workers and joined
    skip_invalid: bool = False
    overwrite: bool = False
    progress: bool = True


@dataclass
class Summary:
    jobs: int
    done: list = field(default_factory=list)  # (job, outcome)
    failed: list = field(default_factory=list)  # (row, name, error)
    skipped: int = 0  # done by an earlier run
    slots: list = field(default_factory=list)
    seconds: float = 0.0
    journal: Path | None = None
    loads: list = field(default_factory=list)  # seconds per model load in the workers

    def print(self, file=None) -> None:
        dubbed = sum(o.seconds for _, o in self.done)
        print(f"{len(self.done)} done, {len(self.failed)} failed, {self.skipped} already done, of {self.jobs} jobs; "
              f"{dubbed:.1f} s of video dubbed in {self.seconds:.1f} s; the model loaded {len(self.loads)} time(s) "
              f"in {sum(self.loads):.1f} s", file=file)
        for slot in self.slots:
            if slot.jobs or slot.pieces:
                pieces = f" and {slot.pieces} piece(s) of long videos" if slot.pieces else ""
                print(f"  {slot.name} ({slot.device}): {slot.jobs} job(s){pieces}, {slot.frames} frames, "
                      f"{slot.frames / max(slot.busy, 1e-9):.2f} frames/s", file=file)
        for row, name, error in self.failed:
            print(f"  failed: row {row} {name}: {error}", file=file)
        print(f"journal: {self.journal}", file=file)


def run_batch(request: BatchRequest, rules: DubRules) -> Summary:
    """Check everything (arguments, every row) before creating any folder or starting any worker."""
    from contextlib import ExitStack

    from ..media.writer import check_output_path

    clock = time.perf_counter()
    workers = _check_workers(request, rules)
    out_dir = check_output_path(request.out_dir, overwrite=True, folder=True).resolve()
    run_dir = Path(request.run_dir).resolve() if request.run_dir else out_dir.parent / f"{out_dir.name}.keysync-batch"
    with ExitStack() as stack:
        if run_dir.is_dir():  # an earlier run's journal: no other run may write it while this one reads it
            stack.enter_context(_lock(run_dir))
        jobs, invalid = read_manifest(request.manifest, out_dir, rules, request.model, request.dtype, request.compile, request.fp8)
        journal = stack.enter_context(closing(Journal(run_dir)))
        summary = Summary(len(jobs) + len(invalid), journal=journal.path)
        todo = []
        for job in jobs:
            if journal.finished(job) and not request.overwrite:
                summary.skipped += 1
            elif Path(job.output).exists() and not request.overwrite:
                invalid.append(InvalidRow(job.row, job.name, f"{job.output} exists and is not this job's output in the journal; "
                                                             "remove it, or pass --overwrite"))
            else:
                todo.append(job)
        invalid.sort(key=lambda r: r.row)
        for row in invalid:
            print(f"keysync batch: row {row.row} ({row.name}): {row.error}", file=sys.stderr)
        if invalid and not request.skip_invalid:
            raise KeySyncError(f"{len(invalid)} of {summary.jobs} rows cannot be dubbed (listed above); fix them, or pass "
                               "--skip-invalid to dub the others")
        out_dir.mkdir(parents=True, exist_ok=True)
        if not run_dir.is_dir():
            run_dir.mkdir(parents=True)
            stack.enter_context(_lock(run_dir))
        if run_dir.stat().st_dev != out_dir.stat().st_dev:
            raise KeySyncError(f"run folder {run_dir} is on another filesystem than {out_dir}; outputs are moved into place "
                               "by renaming, so give a --run-dir on the same one")
        for row in invalid:
            journal.write(row, "invalid", error=row.error)
            summary.failed.append((row.row, row.name, row.error))
        if todo:
            _dub(workers, todo, journal, run_dir, summary, request)
    summary.seconds = time.perf_counter() - clock
    return summary


def _lock(run_dir: Path):
    from filelock import FileLock, Timeout

    try:
        return FileLock(run_dir / "lock").acquire(timeout=0)
    except Timeout:
        raise KeySyncError(f"another keysync batch is running with run folder {run_dir}; wait for it, or give another --run-dir") from None


def _check_workers(request: BatchRequest, rules: DubRules):
    """The workers' arguments checked; returns what starts them: ``start(jobs, staging)``."""
    if request.workers is not None and request.workers < 1:
        raise KeySyncError(f"--workers {request.workers}: give at least 1")
    if request.retries < 0:
        raise KeySyncError(f"--retries {request.retries}: give 0 or more")
    if request.split_long is not None and not request.split_long > 0:
        raise KeySyncError(f"--split-long {request.split_long:g}: give the longest piece in seconds, more than 0")
    if request.ray is not None:
        from .ray_backend import RayWorkers, import_ray

        import_ray()  # not installed: say so before any work
        if request.worker_cpus < 1:
            raise KeySyncError(f"--worker-cpus {request.worker_cpus}: give at least 1")
        return lambda jobs, staging: RayWorkers(request.ray, request.workers, request.worker_cpus, request.devices == "cpu", jobs, staging)
    from .local import LocalWorkers

    devices = _devices(request.devices)
    for device in dict.fromkeys(devices):
        rules.check_device(device)

    def start(jobs: int, staging: Path):
        count = min(request.workers or (len(devices) if devices != ["cpu"] else 1), jobs)
        on_cpu = sum(devices[i % len(devices)] == "cpu" for i in range(count))
        threads = max(1, len(os.sched_getaffinity(0)) // on_cpu) if on_cpu else None
        return LocalWorkers([devices[i % len(devices)] for i in range(count)], threads, staging)

    return start


def _devices(text: str | None) -> list[str]:
    """--devices: 'cpu', or GPU indices '0,1'; default every GPU here, else the CPU."""
    if text is None:
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"]
    if text.strip() == "cpu":
        return ["cpu"]
    names = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit():
            raise KeySyncError(f"--devices {text}: give GPU indices such as 0,1 or cpu")
        names.append(f"cuda:{item}")
    return names


def _dub(start_workers, todo: list[Job], journal: Journal, run_dir: Path, summary: Summary, request: BatchRequest) -> None:
    from tqdm.auto import tqdm

    from .split import join_pieces, piece_path, planned_pieces
    from .worker import Outcome, Task

    staging = run_dir / "staging"
    shutil.rmtree(staging, ignore_errors=True)  # what workers of an interrupted run left
    staging.mkdir()
    plans: dict[str, list] = {}  # a split job's name -> its pieces' sampling windows
    queue, tries, started, failed = deque(), Counter(), {}, set()
    bar = tqdm(total=len(todo), desc="jobs", unit="job", disable=not request.progress, dynamic_ncols=True)
    workers, lines, seconds_out = None, {}, 0.0

    def queue_pieces(job: Job, folder: Path) -> None:
        """The pieces not yet made, first in the queue (so that a long video's pieces run side by side)."""
        missing = [Task(job, "piece", str(folder), i, tuple(w)) for i, w in enumerate(plans[job.name])
                   if not piece_path(folder, i).is_file()]
        queue.extendleft(reversed(missing))
        if not missing:
            join(job, folder)

    def join(job: Job, folder: Path) -> None:
        from ..media.video import probe_video
        from .journal import sha256_of

        staged = staging / f"{job.key[:16]}.joined{Path(job.name).suffix}"
        try:
            join_pieces(folder, len(plans[job.name]), staged)
            info = probe_video(staged)
        except (KeySyncError, OSError) as err:  # the pieces stay: a re-run joins them without dubbing again
            fail(job, f"joining the pieces failed: {err}", journaled=False)
            return
        finish(job, Outcome("done", str(staged), sha256_of(staged), info.frame_count, info.duration), "driver", os.getpid(),
               min(started.get(n, time.time()) for n in (job.name, f"{job.name} [tracking]")), time.time())

    def finish(job: Job, outcome, worker: str, pid: int, start: float, end: float) -> None:
        nonlocal seconds_out
        journal.write(job, "done", worker=worker, pid=pid, start=start, end=end, output=job.output,
                      sha256=outcome.sha256, frames=outcome.frames, seconds=outcome.seconds)
        Path(job.output).parent.mkdir(parents=True, exist_ok=True)
        os.replace(outcome.staged, job.output)  # journal first: a crash between leaves the job to redo
        summary.done.append((job, outcome))
        seconds_out += outcome.seconds
        bar.set_postfix_str(f"{seconds_out:.1f} s of video")
        bar.update()

    def fail(job: Job, error: str, journaled: bool = True) -> None:
        """The job is given up within this run; its other queued tasks go. ``journaled``: a record of the
        failure under the job's own name is already written (a dub task's is; a piece's or a join's is not)."""
        if job.name in failed:
            return
        failed.add(job.name)
        if not journaled:
            journal.write(job, "failed", error=error)
        summary.failed.append((job.row, job.name, error))
        bar.update()
        for task in [t for t in queue if t.job.name == job.name]:
            queue.remove(task)

    parallel = 0  # tasks that could run at once: how many workers are worth starting
    for job in todo:
        seconds = _duration(job.video) if request.split_long else 0.0
        parallel += max(1, math.ceil(seconds / request.split_long)) if request.split_long else 1
        if request.split_long and seconds > request.split_long:
            folder = run_dir / "pieces" / job.key[:16]
            folder.mkdir(parents=True, exist_ok=True)
            plans[job.name] = planned_pieces(folder, job.key)
            if plans[job.name] is None:  # not tracked yet (or by an earlier run, for other inputs or options)
                queue.append(Task(job, "locate", str(folder), split_seconds=request.split_long))
            else:
                queue_pieces(job, folder)
        else:
            queue.append(Task(job))
    try:
        if not queue:  # every piece was made by an earlier run, and joined above
            return
        workers = start_workers(parallel, staging)
        summary.slots = workers.slots
        lines = {s.name: tqdm(total=0, position=i + 1, bar_format="{desc}", disable=not request.progress, leave=False)
                 for i, s in enumerate(workers.slots)}
        while queue or workers.busy():
            for slot in workers.idle():
                if not queue:
                    break
                task = queue.popleft()
                tries[task.name] += 1
                started[task.name] = time.time()
                workers.submit(slot, task)
                journal.write(task, "started", worker=slot.name, pid=slot.pid, device=slot.device, attempt=tries[task.name],
                              start=started[task.name], end=None)
                lines[slot.name].set_description_str(f"  {slot.name}: row {task.row} {task.name}")
            for item in workers.wait():
                task, slot, outcome = item.job, item.slot, item.outcome
                job = task.job
                lines[slot.name].set_description_str(f"  {slot.name}: idle")
                start, end = started[task.name], time.time()
                slot.busy += end - start
                again = tries[task.name] <= request.retries
                if outcome is None:
                    journal.write(task, "lost", worker=slot.name, start=start, end=end, error=item.error)
                    bar.write(f"keysync batch: row {task.row} {task.name}: {item.error}; " + ("queued again" if again else "giving up"))
                    if again:
                        queue.appendleft(task)
                    else:
                        fail(job, item.error, journaled=task.kind == "dub")
                    continue
                for note in outcome.notes:
                    bar.write(f"keysync: row {task.row} {task.name}: {note}")
                if outcome.load_seconds:
                    summary.loads.append(outcome.load_seconds)
                if outcome.status == "done":
                    if task.kind != "dub":
                        journal.write(task, "done", worker=slot.name, pid=outcome.pid, start=start, end=end,
                                      frames=outcome.frames, pieces=outcome.pieces or None)
                    slot.frames += outcome.frames
                    if task.kind == "dub":
                        slot.jobs += 1
                        finish(job, outcome, slot.name, outcome.pid, start, end)
                    elif job.name in failed:
                        pass  # another task of this job failed: nothing more is done for it in this run
                    elif task.kind == "locate":
                        plans[job.name] = outcome.pieces
                        queue_pieces(job, Path(task.folder))
                    else:
                        slot.pieces += 1
                        if all(piece_path(task.folder, i).is_file() for i in range(len(plans[job.name]))):
                            join(job, Path(task.folder))
                    continue
                journal.write(task, "failed", worker=slot.name, pid=outcome.pid, start=start, end=end, error=outcome.error)
                if outcome.retry and again:
                    queue.append(task)
                else:
                    fail(job, outcome.error, journaled=task.kind == "dub")
    except BaseException:  # Ctrl-C or an error: the jobs in hand are journaled as interrupted, to run next time
        for slot in workers.slots if workers else []:
            if slot.job is not None:
                journal.write(slot.job, "interrupted", worker=slot.name, start=started[slot.job.name])
        raise
    finally:
        if workers:
            workers.stop()
        for line in lines.values():
            line.close()
        bar.close()
        shutil.rmtree(staging, ignore_errors=True)


def _duration(video: str) -> float:
    from ..media.video import probe_video

    return probe_video(video).duration
