"""Worker processes on this machine, one pipe each.

Written on ``multiprocessing`` directly because the standard pools cannot say which job a dead worker
held: ``ProcessPoolExecutor`` marks the whole pool broken and fails every pending job, and
``multiprocessing.Pool`` silently replaces the worker and never returns the job. Here each worker holds at
most one job, so a worker that dies loses exactly that one, which is queued again, and a fresh worker
takes its place.
"""

from __future__ import annotations

import multiprocessing
import shutil
import signal
from multiprocessing.connection import wait
from pathlib import Path

from ..errors import KeySyncError
from .worker import Finished, Slot


def _serve(conn, device: str, threads: int | None, staging: str) -> None:
    """A worker process: do the tasks sent on ``conn`` until it is closed or sent None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle; it stops the workers
    from .worker import Dubber

    dubber = Dubber(device, threads, staging)
    conn.send("ready")
    while (task := conn.recv()) is not None:
        conn.send(dubber.run(task))


class LocalWorkers:
    def __init__(self, devices: list[str], threads: int | None, staging: Path):
        self._context = multiprocessing.get_context("spawn")  # fork would copy the driver's threads and locks
        self._threads, self._staging = threads, staging
        self.slots = [Slot(f"local-{i}", device) for i, device in enumerate(devices)]
        for slot in self.slots:
            self._start(slot)

    def _start(self, slot: Slot) -> None:
        ours, theirs = self._context.Pipe()
        staging = self._staging / slot.name
        shutil.rmtree(staging, ignore_errors=True)
        process = self._context.Process(target=_serve, args=(theirs, slot.device, self._threads, str(staging)),
                                        name=f"keysync batch {slot.name}", daemon=True)
        process.start()
        theirs.close()
        slot.handle, slot.pid, slot.job, slot.ready = (process, ours), process.pid, None, False

    def idle(self) -> list[Slot]:
        return [s for s in self.slots if s.job is None]

    def busy(self) -> bool:
        return any(s.job is not None for s in self.slots)

    def submit(self, slot: Slot, job) -> None:
        slot.job = job
        slot.handle[1].send(job)

    def wait(self) -> list[Finished]:
        """Block until a worker returns a job or dies."""
        handles = {s.handle[1]: s for s in self.slots} | {s.handle[0].sentinel: s for s in self.slots}
        finished = []
        for slot in {handles[h].name: handles[h] for h in wait(list(handles))}.values():
            process, conn = slot.handle
            try:
                while conn.poll():
                    message = conn.recv()
                    if message == "ready":
                        slot.ready = True
                    else:
                        finished.append(Finished(slot, slot.job, message))
                        slot.job = None
            except (EOFError, OSError):
                pass
            process.join(timeout=0 if process.is_alive() else 5)
            if process.exitcode is None:
                continue
            if not slot.ready:
                raise KeySyncError(f"worker {slot.name} exited while starting (exit code {process.exitcode}); "
                                   "run keysync dub on one of the jobs to see why")
            if slot.job is not None:
                finished.append(Finished(slot, slot.job, None, f"worker {slot.name} (pid {slot.pid}) died (exit code {process.exitcode})"))
            self._start(slot)
        return finished

    def stop(self) -> None:
        """Ask idle workers to finish and end the others (Ctrl-C, an error) at once."""
        for slot in self.slots:
            process, conn = slot.handle
            if slot.job is None and process.is_alive():
                try:
                    conn.send(None)
                except OSError:
                    pass
            else:
                process.terminate()
        for slot in self.slots:
            process, conn = slot.handle
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
            conn.close()
