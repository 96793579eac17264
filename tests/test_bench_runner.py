"""`keysync bench` end to end with the two bounds: copy leaks, oracle syncs; the metrics tell them apart."""

import csv
import json

import numpy as np
import pytest

from keysync.bench.methods import CopyMethod, LipSyncTask, MethodOutput, get_method, register_method
from keysync.bench.runner import spread_over_identities
from keysync.cli import main
from keysync.synth.dataset import load_split

from .conftest import assert_umask_modes


@pytest.fixture(scope="module")
def bench_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    results = {}
    for method in ("copy", "oracle"):
        out = root / method
        argv = ["bench", "--method", method, "--clips", "2", "--size", "128", "--out", str(out), "--json", str(root / f"{method}.json")]
        if method == "oracle":  # reuse the clips rendered for copy
            argv += ["--data", str(root / "copy" / "data")]
        assert main(argv) == 0
        results[method] = json.loads((root / f"{method}.json").read_text())
    return root, results


def test_copy_leaks_and_oracle_syncs(bench_runs):
    _, r = bench_runs
    assert set(r["copy"]) == {"reconstruction", "cross", "silent"}
    assert r["copy"]["silent"]["lipleak"] >= 0.8
    assert r["copy"]["cross"]["cross_leak"] >= 0.9
    assert r["copy"]["silent"]["lipleak_lm"] >= 0.8
    assert r["oracle"]["silent"]["lipleak"] <= 0.05
    assert r["oracle"]["cross"]["sync_corr"] >= 0.9
    assert r["oracle"]["reconstruction"]["sync_corr"] >= 0.9
    assert r["oracle"]["cross"]["cross_leak"] < 0.5
    # beyond what the new speech explains, the copy still follows the source and the oracle does not
    assert r["copy"]["cross"]["cross_leak_partial"] >= 0.9 and abs(r["oracle"]["cross"]["cross_leak_partial"]) < 0.3
    assert r["oracle"]["silent"]["lipleak_lm"] <= 0.05
    # identity is perfect for copy and very good for the oracle (only the encoding differs)
    assert r["copy"]["cross"]["psnr_outside"] == 100.0
    assert r["oracle"]["cross"]["psnr_upper"] > 30 and r["oracle"]["cross"]["ssim_outside"] > 0.95
    assert r["copy"]["cross"]["edge_jitter"] == 0.0


def test_results_files(bench_runs):
    root, _ = bench_runs
    for method in ("copy", "oracle"):
        rows = list(csv.DictReader(open(root / method / "per_clip.csv")))
        assert len(rows) == 2 * 3 and {r["mode"] for r in rows} == {"reconstruction", "cross", "silent"}
        summary = list(csv.DictReader(open(root / method / "summary.csv")))
        assert [s["mode"] for s in summary] == ["reconstruction", "cross", "silent"]
        assert (root / method / "plots.png").read_bytes()[:4] == b"\x89PNG"
        assert_umask_modes(root / method, root / f"{method}.json")
    # results are not overwritten without --overwrite
    assert main(["bench", "--method", "copy", "--clips", "2", "--size", "128", "--out", str(root / "copy")]) == 1


def test_method_protocol_and_registry(bench_runs, tmp_path):
    root, _ = bench_runs

    class HalfFrames:
        name = "broken"

        def __call__(self, task: LipSyncTask) -> MethodOutput:
            return MethodOutput(task.source_frames()[::2])

    register_method("broken-for-test", HalfFrames)
    assert isinstance(get_method("copy"), CopyMethod)
    data = ["--data", str(root / "copy" / "data"), "--clips", "2"]
    assert main(["bench", "--method", "broken-for-test", "--out", str(tmp_path / "b"), *data]) == 1
    assert main(["bench", "--method", "no-such-method", "--out", str(tmp_path / "c"), *data]) == 1
    assert not (tmp_path / "b" / "summary.csv").exists()
    assert np.isfinite(json.loads((root / "copy.json").read_text())["cross"]["sync_mae"])


def test_landmark_only_metrics_with_a_face_front_end():
    pytest.importorskip("mediapipe")
    pytest.importorskip("keysync.faces.backends")
    from keysync.bench.metrics import mouth_aspect_ratio
    from keysync.bench.runner import detect_landmarks
    from keysync.faces.backends import load_backend
    from keysync.synth.render import FaceRenderer, Identity, Motion, Scene

    rng = np.random.default_rng(7)
    ident, scene = Identity.sample(rng), Scene.sample(rng)
    r = FaceRenderer(ident, scene, 256, 256)
    pose = Motion(3).poses(1, 25)[0]
    frames, truth = [], []
    for jaw in (0.03, 0.4, 0.9):
        f, lm, _ = r.render(pose, np.array([jaw, 0.5, 0.15, 0.3, 0.1]))
        frames.append(f)
        truth.append(lm)
    found = detect_landmarks(np.stack(frames), load_backend("mediapipe"), np.stack(truth))
    assert np.isfinite(found).all()
    assert np.abs(found - np.stack(truth)).mean() < 8  # pixels, at 256x256
    mar = mouth_aspect_ratio(found)
    assert mar[0] < mar[1] < mar[2]


def test_keysync_method_model_errors(tmp_path, capsys):
    assert main(["bench", "--method", "copy", "--model", str(tmp_path), "--out", str(tmp_path / "b")]) == 1
    assert "--model only applies" in capsys.readouterr().err
    assert main(["bench", "--method", "keysync", "--model", str(tmp_path), "--out", str(tmp_path / "b")]) == 1
    assert "not a KeySync model folder" in capsys.readouterr().err
    assert main(["bench", "--method", "copy", "--guidance", "2,1", "--out", str(tmp_path / "b")]) == 1
    assert "--guidance only applies" in capsys.readouterr().err
    assert main(["bench", "--method", "oracle", "--steps", "20", "--out", str(tmp_path / "b")]) == 1
    assert "--steps only applies" in capsys.readouterr().err
    assert main(["bench", "--method", "keysync", "--steps", "0", "--out", str(tmp_path / "b")]) == 1
    assert "at least 1 network call" in capsys.readouterr().err
    assert main(["bench", "--method", "copy", "--split", "val", "--out", str(tmp_path / "b")]) == 1
    assert "--split needs --data" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_clips_are_spread_over_identities(bench_runs):
    root, _ = bench_runs
    rendered = load_split(root / "copy" / "data", "test")
    assert len({r.spec().identity_id for r in rendered}) == len(rendered) == 2  # the bench's own: a face each

    class Clip:
        def __init__(self, name, identity):
            self.name, self.identity_id = name, identity

        def spec(self):
            return self

    split = [Clip(f"c{i}", face) for i, face in enumerate("AAAABBBBCC")]  # a synth split: 4 clips per face
    assert [c.name for c in spread_over_identities(split)] == ["c0", "c4", "c8", "c1", "c5", "c9", "c2", "c6", "c3", "c7"]


def test_val_split_of_a_dataset(bench_runs, tmp_path, capsys):
    root, _ = bench_runs
    data = ["--data", str(root / "copy" / "data"), "--clips", "2"]
    assert main(["bench", "--method", "copy", "--split", "val", "--out", str(tmp_path / "v"), *data]) == 1
    assert "fewer than 2 speech clips in its val split" in capsys.readouterr().err


def test_autoencode_bounds_the_shipped_model(bench_runs, tmp_path):
    """The autoencode baseline keeps the source's mouth (high sync in reconstruction, full leakage in
    silence) and loses only what the crop and the VAE lose: the upper face and the outside stay."""
    root, _ = bench_runs
    data = ["--data", str(root / "copy" / "data"), "--clips", "2"]
    out = tmp_path / "auto.json"
    assert main(["bench", "--method", "autoencode", "--modes", "reconstruction,silent", "--out", str(tmp_path / "a"), "--json", str(out), *data]) == 0
    r = json.loads(out.read_text())
    assert r["reconstruction"]["sync_corr"] > 0.8
    assert r["silent"]["lipleak"] > 0.5  # the source still speaks: nothing was regenerated
    assert 0.8 < r["reconstruction"]["ssim_mask"] < 0.99  # through the VAE, not a copy
    assert r["reconstruction"]["psnr_outside"] > 40
    assert main(["bench", "--method", "autoencode", "--guidance", "2,1", "--out", str(tmp_path / "b"), *data]) == 1
