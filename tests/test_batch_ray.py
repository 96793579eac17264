"""`keysync batch --ray` on a local Ray cluster of 2 CPUs (one for each of 2 actors): the outputs equal
single `keysync dub` runs (and so the local workers' run, tests/test_batch_local.py), the failed job is in
the summary and the journal, and a re-run dubs nothing again (docs/batch.md)."""

import json
import os

import pytest

from keysync.cli import main

from .batch_catalogue import catalogue, outputs, same_dub, write_manifest
from .conftest import ROOT


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), path]))  # the actors import this checkout's keysync
    ray.init(num_cpus=2, include_dashboard=False, logging_level="error")
    yield ray
    ray.shutdown()
    if path is None:
        del os.environ["PYTHONPATH"]
    else:
        os.environ["PYTHONPATH"] = path


def test_ray_actors_dub_what_dub_does_and_a_rerun_dubs_nothing_again(ray_cluster, tmp_path_factory, tmp_path, capsys):
    root = catalogue(tmp_path_factory)
    manifest, out = write_manifest(root / "jobs-ray.csv", root), tmp_path / "out"
    command = ["batch", str(manifest), "-o", str(out), "--model", str(root / "micro"), "--ray", "--skip-invalid", "--quiet"]
    assert main(command) == 1  # a job failed: the unreadable video
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == outputs()
    for name in outputs():
        assert same_dub(out / name, root / "reference" / name), name
    journal = tmp_path / "out.keysync-batch" / "journal.jsonl"
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    done = {r["job"]: r for r in records if r["status"] == "done"}
    assert sorted(done) == outputs() and {r["worker"] for r in done.values()} == {"ray-0", "ray-1"}
    assert len({r["pid"] for r in done.values()}) == 2 and os.getpid() not in {r["pid"] for r in done.values()}
    (failed,) = [r for r in records if r["status"] not in ("started", "done")]
    assert (failed["job"], failed["status"]) == ("broken.mp4", "invalid") and "cannot be read as media" in failed["error"]
    assert "3 done, 1 failed, 0 already done, of 4 jobs" in printed
    assert f"failed: row 4 broken.mp4: {failed['error']}" in printed
    assert ray_cluster.is_initialized()  # a cluster the caller started is left running

    assert main(command) == 1
    assert "0 done, 1 failed, 3 already done, of 4 jobs" in capsys.readouterr().out
    again = [json.loads(line) for line in journal.read_text().splitlines()][len(records):]
    assert [(r["job"], r["status"]) for r in again] == [("broken.mp4", "invalid")]
