"""`keysync batch` on local worker processes: the manifest checked before any work, a resumable run whose
outputs equal single `keysync dub` runs, a worker killed mid-job, Ctrl-C (docs/batch.md)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from keysync.batch.commands import dub_rules
from keysync.batch.manifest import read_manifest
from keysync.cli import main
from keysync.models.model import SHIPPED_MODEL

from .batch_catalogue import ROWS, catalogue, outputs, same_dub, sha256, write_manifest
from .conftest import ROOT
from .faces_media_clips import write_clip


def journal(out_dir: Path) -> list[dict]:
    path = out_dir.parent / f"{out_dir.name}.keysync-batch" / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_manifest_problems_are_named_before_any_work(tmp_path_factory, tmp_path, capsys, monkeypatch):
    root = catalogue(tmp_path_factory)
    out = tmp_path / "out"
    bad_columns = root / "columns.csv"
    bad_columns.write_text("video,audio,colour,face-index,vidoe\nv0.mp4,speech.mp4,red,0,x\n")
    assert main(["batch", str(bad_columns), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown column(s) colour, vidoe;" in err[0], err  # face-index is dub's --face-index

    rows = root / "rows.csv"
    rows.write_text("video,audio,steps,seed\nv0.mp4,speech.mp4,1,1\nmissing.mp4,speech.mp4,1,1\nv1.mp4,speech.mp4,0,1\n"
                    "broken.mp4,speech.mp4,1,1\n")
    assert main(["batch", str(rows), "-o", str(out), "--model", str(root / "micro")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("keysync batch: row 2 (missing.mp4):") and "does not exist" in err[0]
    assert err[1].startswith("keysync batch: row 3 (v1.mp4): --steps 0")
    assert err[2].startswith("keysync batch: row 4 (broken.mp4):") and "cannot be read as media" in err[2]
    assert err[3] == ("keysync batch: error: 3 of 4 rows cannot be dubbed (listed above); fix them, or pass --skip-invalid "
                      "to dub the others")
    assert not out.exists() and not (tmp_path / "out.keysync-batch").exists()  # nothing made, not even a folder

    jsonl = root / "rows.jsonl"
    jsonl.write_text(json.dumps({"video": "v0.mp4", "audio": "speech.mp4", "guidance": [4, 1.5], "color_match": True,
                                 "long-audio": "hold", "speed": "fast", "batch-size": 3, "output": "sub/a.mp4", "model": "small"}) + "\n")
    (job,), invalid = read_manifest(jsonl, out, dub_rules())
    assert invalid == [] and job.output == str(out / "sub" / "a.mp4") and job.video == str(root / "v0.mp4")
    assert job.model == str(SHIPPED_MODEL)  # "small": the shipped demo model's folder
    assert {k: job.options[k] for k in ("guidance", "color_match", "long_audio", "speed", "clips_per_call", "steps")} == {
        "guidance": (4.0, 1.5), "color_match": True, "long_audio": "hold", "speed": "fast", "clips_per_call": 3, "steps": None}

    assert main(["batch", str(jsonl), "-o", str(out), "--workers", "0"]) == 1
    assert capsys.readouterr().err.strip() == "keysync batch: error: --workers 0: give at least 1"
    assert main(["batch", str(jsonl), "-o", str(out), "--split-long", "0"]) == 1
    assert capsys.readouterr().err.strip() == "keysync batch: error: --split-long 0: give the longest piece in seconds, more than 0"
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main(["batch", str(jsonl), "-o", str(out), "--ray"]) == 1
    assert capsys.readouterr().err.strip() == ('keysync batch: error: --ray needs Ray, which is not installed; install it with '
                                               'pip install "keysync[ray]"')


def test_compile_is_set_for_the_batch_and_each_worker_compiles_its_model_once(tmp_path_factory, tmp_path, monkeypatch):
    """`keysync batch --compile`: every job carries it (with the key of the same job without it: the output
    changes by float rounding only), and a worker compiles the networks once per model it loads."""
    from keysync.batch.worker import Dubber
    from keysync.pipeline.dub import KeySyncPipeline

    root = catalogue(tmp_path_factory)
    manifest = root / "compile.csv"
    manifest.write_text("video,audio,steps\nv0.mp4,speech.mp4,1\nv1.mp4,speech.mp4,1\n")
    compiled, invalid = read_manifest(manifest, tmp_path / "out", dub_rules(), str(root / "micro"), compile=True)
    plain, _ = read_manifest(manifest, tmp_path / "out", dub_rules(), str(root / "micro"))
    assert not invalid and [j.compile for j in compiled] == [True, True] and [j.compile for j in plain] == [False, False]
    assert [j.key for j in compiled] == [j.key for j in plain]
    calls = []
    monkeypatch.setattr(KeySyncPipeline, "compile", lambda self, **options: calls.append(self) or self)
    dubber = Dubber("cpu", None, str(tmp_path))
    pipe = dubber.pipeline(compiled[0])
    assert calls == [pipe] and dubber.pipeline(compiled[1]) is pipe and calls == [pipe]  # the second job reuses it
    assert dubber.pipeline(plain[0]) is not pipe and calls == [pipe]  # plain networks are loaded afresh


def test_fp8_is_set_for_the_batch_is_part_of_each_key_and_reaches_the_workers_networks(tmp_path_factory, tmp_path, monkeypatch):
    """`keysync batch --fp8 emulate`: every job carries it, in its key (the output changes: a journal's plain
    output is not that job's), and a worker gives its networks FP8 once per model it loads, before
    compiling them."""
    from keysync.batch.worker import Dubber
    from keysync.pipeline.dub import KeySyncPipeline

    root = catalogue(tmp_path_factory)
    manifest = root / "fp8.csv"
    manifest.write_text("video,audio,steps\nv0.mp4,speech.mp4,1\nv1.mp4,speech.mp4,1\n")
    fp8, invalid = read_manifest(manifest, tmp_path / "out", dub_rules(), str(root / "micro"), compile=True, fp8="emulate")
    plain, _ = read_manifest(manifest, tmp_path / "out", dub_rules(), str(root / "micro"), compile=True)
    assert not invalid and [j.fp8 for j in fp8] == ["emulate"] * 2 and [j.fp8 for j in plain] == [None] * 2
    assert len({j.key for j in fp8} | {j.key for j in plain}) == 4
    calls = []
    monkeypatch.setattr(KeySyncPipeline, "fp8", lambda self, mode: calls.append(("fp8", mode)) or self)
    monkeypatch.setattr(KeySyncPipeline, "compile", lambda self, **options: calls.append(("compile",)) or self)
    dubber = Dubber("cpu", None, str(tmp_path))
    pipe = dubber.pipeline(fp8[0])
    assert calls == [("fp8", "emulate"), ("compile",)] and dubber.pipeline(fp8[1]) is pipe
    assert dubber.pipeline(plain[0]) is not pipe and calls[2:] == [("compile",)]  # plain networks are loaded afresh


def test_an_option_added_later_keeps_the_keys_of_jobs_that_do_not_set_it(tmp_path_factory, tmp_path, monkeypatch):
    """A journal written before --deep-cache existed stays valid: a job that leaves it at its default has
    the key the version without the option gave it; set, it is another job."""
    from keysync.batch import manifest as batch_manifest

    root = catalogue(tmp_path_factory)
    (root / "deep.csv").write_text("video,audio,steps\nv0.mp4,speech.mp4,1\n")
    (root / "deep2.csv").write_text("video,audio,steps,deep-cache\nv0.mp4,speech.mp4,1,2\n")

    def key(name: str) -> str:
        (job,), invalid = read_manifest(root / name, tmp_path / "out", dub_rules(), str(root / "micro"))
        assert not invalid
        return job.key

    now, deep = key("deep.csv"), key("deep2.csv")
    with monkeypatch.context() as before:  # the version before: no such option at all
        before.setattr(batch_manifest, "DUB_OPTIONS", {k: v for k, v in batch_manifest.DUB_OPTIONS.items() if k != "deep_cache"})
        before.setattr(batch_manifest, "LATER_OPTIONS", {})
        assert key("deep.csv") == now
    assert deep != now


def test_every_dub_option_is_a_column_that_reaches_the_dub():
    """An option `keysync dub` gains must be mapped here, or batch would accept the column and ignore it."""
    from dataclasses import fields

    from keysync.batch.manifest import BATCH_ONLY, DUB_OPTIONS, OTHER_OPTIONS, manifest_columns
    from keysync.pipeline.dub import DubOptions

    parser = dub_rules().parser
    assert set(manifest_columns(parser)) == set(DUB_OPTIONS) | set(OTHER_OPTIONS)
    assert {a.dest for a in parser._actions} - set(manifest_columns(parser)) <= set(BATCH_ONLY) | {"video", "audio"}
    assert set(DUB_OPTIONS.values()) <= {f.name for f in fields(DubOptions)}


def _watch(folder: Path, seen: dict, stop: threading.Event) -> None:
    """Every file that appears under ``folder``, with its size when first seen."""
    while not stop.is_set():
        for path in folder.rglob("*"):
            try:
                seen.setdefault(path.relative_to(folder).as_posix(), path.stat().st_size)
            except FileNotFoundError:
                seen.setdefault(path.relative_to(folder).as_posix(), "vanished")
        time.sleep(0.005)


def _wait_for(condition, what: str, process, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        assert process.poll() is None, f"batch ended (exit {process.returncode}) before {what}"
        time.sleep(0.01)
    pytest.fail(f"no {what} within {timeout} s")


def _batch(command: list[str], log: Path, cwd: Path) -> subprocess.Popen:
    """`keysync batch` in a child process started as a terminal starts it (SIGINT not ignored)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with open(log, "w") as output:
        return subprocess.Popen([sys.executable, "-m", "keysync.cli", *command], stdout=output, stderr=subprocess.STDOUT,
                                env=env, cwd=cwd, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _started_pid(out: Path, job: str):
    """The pid of the worker holding ``job`` once it is encoding the output (a partial file in staging)."""
    run_dir = out.parent / f"{out.name}.keysync-batch"
    started = [r for r in journal(out) if r["status"] == "started" and r["job"] == job] if (run_dir / "journal.jsonl").exists() else []
    if started and list((run_dir / "staging" / started[-1]["worker"]).glob("*.partial*")):
        return started[-1]["pid"]
    return None


def test_two_workers_a_killed_one_and_a_rerun_that_retries_only_the_failed_job(tmp_path_factory, tmp_path, capsys):
    """4 jobs, one video unreadable, 2 workers; the worker writing the first output is killed (SIGKILL):
    its job is queued again and done; the outputs equal single `keysync dub` runs byte for byte, and only
    complete outputs ever appear in OUT_DIR. The same command again dubs nothing and retries the failed job."""
    root = catalogue(tmp_path_factory)
    manifest, out = write_manifest(root / "jobs-local.csv", root), tmp_path / "out"
    command = ["batch", str(manifest), "-o", str(out), "--model", str(root / "micro"), "--workers", "2", "--skip-invalid", "--quiet"]
    out.mkdir()
    seen, stop, log = {}, threading.Event(), tmp_path / "log.txt"
    watcher = threading.Thread(target=_watch, args=(out, seen, stop))
    watcher.start()
    try:
        batch = _batch(command, log, tmp_path)
        killed = _wait_for(lambda: _started_pid(out, "v0.mp4"), "first output being written", batch)
        os.kill(killed, signal.SIGKILL)
        assert batch.wait(timeout=240) == 1, log.read_text()  # a job failed: the unreadable video
    finally:
        stop.set()
        watcher.join()
    printed = log.read_text()
    assert sorted(p.name for p in out.iterdir()) == outputs()
    assert seen == {name: (out / name).stat().st_size for name in outputs()}  # renamed into place complete, nothing else
    for name in outputs():  # byte for byte what `keysync dub` wrote for the same row
        assert same_dub(out / name, root / "reference" / name), name
    records = journal(out)
    by_job = {name: [r["status"] for r in records if r["job"] == name] for name in outputs()}
    assert by_job == {"v0.mp4": ["started", "lost", "started", "done"], "v1.mp4": ["started", "done"], "two.mp4": ["started", "done"]}
    lost = next(r for r in records if r["status"] == "lost")
    assert f"(pid {killed}) died (exit code -9)" in lost["error"]
    done = {r["job"]: r for r in records if r["status"] == "done"}
    assert all(done[n]["sha256"] == sha256(out / n) for n in done) and killed not in {r["pid"] for r in done.values()}
    (failed,) = [r for r in records if r["job"] == "broken.mp4"]
    assert failed["status"] == "invalid" and "cannot be read as media" in failed["error"]
    assert "3 done, 1 failed, 0 already done, of 4 jobs" in printed
    assert f"failed: row 4 broken.mp4: {failed['error']}" in printed
    assert not (out.parent / "out.keysync-batch" / "staging").exists()

    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(command) == 1
    assert "0 done, 1 failed, 3 already done, of 4 jobs" in capsys.readouterr().out
    again = journal(out)[len(records):]
    assert [(r["job"], r["status"]) for r in again] == [("broken.mp4", "invalid")]  # tried again, nothing else started
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps


def test_ctrl_c_stops_the_workers_and_journals_the_job_as_interrupted(tmp_path_factory, tmp_path):
    root = catalogue(tmp_path_factory)
    manifest, out = write_manifest(root / "jobs-interrupt.csv", root, ROWS[:1], broken=False), tmp_path / "out"
    log = tmp_path / "log.txt"
    batch = _batch(["batch", str(manifest), "-o", str(out), "--model", str(root / "micro"), "--quiet"], log, tmp_path)
    _wait_for(lambda: (out.parent / "out.keysync-batch" / "journal.jsonl").exists() and journal(out), "job started", batch)
    batch.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C gives the driver (its workers ignore it)
    assert batch.wait(timeout=60) == 130
    assert log.read_text().strip().splitlines()[-1] == "keysync batch: interrupted"
    assert [(r["job"], r["status"]) for r in journal(out)] == [("v0.mp4", "started"), ("v0.mp4", "interrupted")]
    assert list(out.iterdir()) == [] and not (out.parent / "out.keysync-batch" / "staging").exists()
    worker = journal(out)[0]["pid"]
    with pytest.raises(ProcessLookupError):  # the worker is gone too
        os.kill(worker, 0)


def test_a_job_that_fails_in_its_worker_is_reported_and_not_retried_within_the_run(tmp_path_factory, tmp_path, capsys):
    """A problem with the input found while dubbing (no face) is one line in the journal and the summary, and
    is not tried again within the run (it would fail the same way), whatever --retries says."""
    root = catalogue(tmp_path_factory)
    write_clip(tmp_path / "grey.mp4", [np.full((120, 160, 3), 90, np.uint8)] * 8)
    manifest, out = tmp_path / "jobs.csv", tmp_path / "out"
    manifest.write_text(f"video,audio,steps\ngrey.mp4,{root / 'speech.mp4'},1\n")
    assert main(["batch", str(manifest), "-o", str(out), "--model", str(root / "micro"), "--retries", "2", "--quiet"]) == 1
    records = journal(out)
    assert [r["status"] for r in records] == ["started", "failed"]
    assert records[1]["error"].startswith("no face found in ") and "\n" not in records[1]["error"]
    printed = capsys.readouterr().out
    assert "0 done, 1 failed, 0 already done, of 1 jobs" in printed and f"failed: row 1 grey.mp4: {records[1]['error']}" in printed
    assert list(out.iterdir()) == []
