"""Workers as Ray actors, each holding one GPU (or ``--worker-cpus`` CPUs) and the loaded model; the driver
gives each actor one job at a time, so an actor that dies (killed, its node lost) loses exactly that job,
which is queued again, and a new actor takes its place wherever the cluster has room.

Inputs, OUT_DIR and the run folder must be on storage every node sees (a shared filesystem)."""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import KeySyncError
from .worker import Dubber, Finished, Slot

INSTALL = 'pip install "keysync[ray]"'


def import_ray():
    try:
        import ray
    except ImportError:
        raise KeySyncError(f"--ray needs Ray, which is not installed; install it with {INSTALL}") from None
    return ray


class RayWorkers:
    def __init__(self, address: str | None, workers: int | None, worker_cpus: int, cpu_only: bool, jobs: int, staging: Path):
        ray = self._ray = import_ray()
        self._owns = not ray.is_initialized()  # a cluster this run started or joined, to leave at the end
        if self._owns:
            try:
                ray.init(address=address or None, include_dashboard=False, logging_level="error")
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise KeySyncError(f"cannot reach the Ray cluster at {address} ({str(err).splitlines()[0]}); start one "
                                   "with `ray start --head`, or give --ray alone to run a local one") from None
        resources = ray.cluster_resources()
        gpus = 0 if cpu_only else int(resources.get("GPU", 0))
        count = min(workers or gpus or max(1, int(resources.get("CPU", 1)) // worker_cpus), jobs)
        self._options = dict(num_cpus=worker_cpus, num_gpus=1 if gpus else 0)
        self._actor = ray.remote(Dubber)
        self._threads = None if gpus else worker_cpus
        self._staging, self._pending = staging, {}
        self.slots = [Slot(f"ray-{i}", "cuda" if gpus else "cpu") for i in range(count)]
        for slot in self.slots:
            self._start(slot)

    def _start(self, slot: Slot) -> None:
        staging = self._staging / slot.name
        shutil.rmtree(staging, ignore_errors=True)
        slot.handle = self._actor.options(**self._options).remote(slot.device, self._threads, str(staging))
        slot.job = None

    def idle(self) -> list[Slot]:
        return [s for s in self.slots if s.job is None]

    def busy(self) -> bool:
        return bool(self._pending)

    def submit(self, slot: Slot, job) -> None:
        slot.job = job
        self._pending[slot.handle.run.remote(job)] = slot

    def wait(self) -> list[Finished]:
        """Block until an actor returns a job or is lost."""
        ray = self._ray
        ready, _ = ray.wait(list(self._pending), num_returns=1)
        finished = []
        for ref in ready:
            slot = self._pending.pop(ref)
            job, slot.job = slot.job, None
            try:
                finished.append(Finished(slot, job, ray.get(ref)))
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as err:
                why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                finished.append(Finished(slot, job, None, f"worker {slot.name} was lost ({why})"))
                ray.kill(slot.handle, no_restart=True)
                self._start(slot)
        return finished

    def stop(self) -> None:
        for slot in self.slots:
            self._ray.kill(slot.handle, no_restart=True)
        if self._owns:
            self._ray.shutdown()
