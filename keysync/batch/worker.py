"""What one worker does, in a local process or a Ray actor: load the model once, then dub job after job into
its own staging folder. The driver moves a finished output into OUT_DIR, so a worker that dies leaves
nothing there."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import KeySyncError


@dataclass(frozen=True)
class Task:
    """What a worker is handed: a whole job (``dub``), or for a video split into pieces (``--split-long``) its
    face tracking and piece plan (``locate``) or one piece (``piece``), in the job's ``folder`` of the run folder."""

    job: object  # the manifest's Job
    kind: str = "dub"
    folder: str | None = None
    piece: int = 0
    windows: tuple[int, int] | None = None  # a piece's sampling windows
    split_seconds: float = 0.0  # for locate: the longest piece wanted

    @property
    def name(self) -> str:
        """The task's name in the journal; a whole job's is its output's."""
        return {"dub": self.job.name, "locate": f"{self.job.name} [tracking]"}.get(self.kind, f"{self.job.name} [piece {self.piece}]")

    @property
    def row(self) -> int:
        return self.job.row

    @property
    def key(self) -> str:
        return self.job.key


@dataclass
class Outcome:
    status: str  # "done" or "failed"
    staged: str | None = None  # the finished output in the worker's staging folder
    sha256: str | None = None
    frames: int = 0
    seconds: float = 0.0  # the output's duration
    error: str | None = None  # one line
    retry: bool = False  # whether another try may succeed (an unexpected error, not a problem with the input)
    load_seconds: float = 0.0  # spent loading the model for this job (0 when it was loaded already)
    notes: list[str] = field(default_factory=list)  # the pipeline's notes (length policy, a face that leaves)
    pid: int = 0
    pieces: list = field(default_factory=list)  # locate: each piece's (first, stop) sampling windows


class _Notes(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class Dubber:
    """Holds the loaded pipeline (and SAM 2 segmenter) from one job to the next."""

    def __init__(self, device: str, threads: int | None, staging: str):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.device, self.staging = device, Path(staging)
        self.staging.mkdir(parents=True, exist_ok=True)
        self._pipe, self._loaded, self._loaded_now, self._segmenters = None, None, False, {}

    def pipeline(self, job):
        """The job's model, loaded only when it differs from the last job's."""
        import torch

        from ..parallel import exempt_loaded_objects
        from ..pipeline.dub import KeySyncPipeline

        wanted = (job.model, job.random_weights, job.dtype, job.compile, job.fp8)
        self._loaded_now = wanted != self._loaded
        if self._loaded_now:
            self._pipe, self._loaded = None, None  # free the previous model's memory before loading the next
            self._pipe = KeySyncPipeline.from_pretrained(job.model, device=self.device,
                                                         dtype=getattr(torch, job.dtype), random_weights=job.random_weights)
            if job.fp8:
                self._pipe.fp8(job.fp8)
            if job.compile:
                self._pipe.compile()
            exempt_loaded_objects()
            self._loaded = wanted
        return self._pipe

    def run(self, task: Task) -> Outcome:
        """Do ``task``; a failure is an ``Outcome`` with its one-line error, never an exception."""
        from ..media.video import probe_video
        from ..pipeline.dub import DubOptions
        from .journal import sha256_of

        job = task.job
        notes = _Notes()
        logging.getLogger("keysync").addHandler(notes)
        folder = Path(task.folder) if task.folder else self.staging
        occluders = folder / f"{job.key[:16]}.occluders.npy"
        loaded = 0.0
        try:
            clock = time.perf_counter()
            pipe = self.pipeline(job)
            loaded = time.perf_counter() - clock if self._loaded_now else 0.0
            options = DubOptions(**job.options)
            if job.clicks is not None:
                options.occluders = str(occluders if task.kind == "piece" else self._track(job, occluders))
            if task.kind == "locate":
                from .split import locate

                return Outcome("done", pieces=locate(pipe, job, options, folder, task.split_seconds), load_seconds=loaded,
                               notes=notes.lines, pid=os.getpid())
            if task.kind == "piece":
                from ..faces.frontend import load_location
                from .split import piece_path

                staged = piece_path(folder, task.piece)
                pipe.dub_file(job.video, job.audio, staged, options, overwrite=True, face=load_location(folder / "face.npz"),
                              windows=task.windows)
            else:
                staged = self.staging / f"{job.key[:16]}{Path(job.name).suffix}"
                pipe.dub_file(job.video, job.audio, staged, options, overwrite=True)
            info = probe_video(staged)
            return Outcome("done", str(staged), sha256_of(staged), info.frame_count, info.duration,
                           load_seconds=loaded, notes=notes.lines, pid=os.getpid())
        except KeySyncError as err:
            return Outcome("failed", error=str(err), load_seconds=loaded, notes=notes.lines, pid=os.getpid())
        except Exception as err:  # noqa: BLE001 - any failure of one job is reported, and the worker goes on
            line = str(err).strip().splitlines()[0] if str(err).strip() else ""
            return Outcome("failed", error=f"{type(err).__name__}: {line}", retry=True, load_seconds=loaded, notes=notes.lines,
                           pid=os.getpid())
        finally:
            logging.getLogger("keysync").removeHandler(notes)
            if task.kind == "dub":  # a split job's masks serve its pieces; its folder goes when they are joined
                occluders.unlink(missing_ok=True)

    def _track(self, job, masks: Path) -> Path:
        """The clicked occluder tracked with SAM 2, as `keysync dub --occluder-point` does."""
        from ..faces.occluders import DEFAULT_SEGMENTER, Clicks, load_segmenter, track_occluders

        name = job.segmenter or DEFAULT_SEGMENTER
        if name not in self._segmenters:
            self._segmenters = {name: load_segmenter(name, self.device)}
        frame, positive, negative = job.clicks
        return Path(track_occluders(job.video, masks, Clicks(frame, list(positive), list(negative)), self._segmenters[name],
                                    overwrite=True, progress=False))


@dataclass
class Slot:
    """The driver's view of one worker: its name in the journal, its device, the job it holds."""

    name: str
    device: str
    pid: int | None = None
    job: object = None
    handle: object = None  # the backend's: a local process's (process, connection), a Ray actor
    ready: bool = False  # it has started (a local worker that dies before that cannot start at all)
    jobs: int = 0
    pieces: int = 0
    frames: int = 0
    busy: float = 0.0


@dataclass
class Finished:
    """A job a worker returned (``outcome``), or lost with the worker (``outcome`` None, ``error`` why)."""

    slot: Slot
    job: object
    outcome: Outcome | None
    error: str | None = None
