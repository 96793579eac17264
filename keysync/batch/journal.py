"""The run folder's journal: one JSON line per event of a job (started, done, failed, lost, interrupted,
invalid), appended and synced as it happens, so that a re-run knows what is finished even after a crash."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

JOURNAL = "journal.jsonl"


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Journal:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / JOURNAL
        self.records = self._read()
        self._file = None  # opened (and the file made) at the first record

    def _read(self) -> list[dict]:
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash while it was written
                continue
        return records

    def write(self, job, status: str, **fields) -> dict:
        """Append a record for ``job`` (a Job, or an InvalidRow, which has no key)."""
        record = {"job": job.name, "row": job.row, "key": getattr(job, "key", None), "status": status, **fields}
        record.setdefault("end", time.time())
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.records.append(record)
        return record

    def finished(self, job) -> bool:
        """The job's output is the one this journal recorded as done for the same job (inputs and options)."""
        done = [r for r in self.records if r["job"] == job.name and r["status"] == "done"]
        if not done or done[-1]["key"] != job.key or not Path(job.output).is_file():
            return False
        return sha256_of(job.output) == done[-1]["sha256"]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
