"""``keysync eval`` end to end on short face clips, with SyncNet weights made on the fly (random, seeded):
weights in the reference's pickle format and as safetensors, a pickle that would run code, a missing file,
a folder with bad clips, and PSNR / SSIM against scikit-image's own functions."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from keysync.cli import main
from keysync.eval.syncnet import SYNCNET_URL, SyncNet

from .faces_media_clips import astronaut, moving_frames, tone, write_clip

FRAMES = 9  # 4 SyncNet windows


def _noisy(frames, seed=0):
    rng = np.random.default_rng(seed)
    return [np.clip(f.astype(np.int16) + rng.integers(-8, 9, f.shape), 0, 255).astype(np.uint8) for f in frames]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """outputs/: a (a face, with its source), b (no face), c (6 frames, its source 9), d (no source);
    sources/: a, c and e (no output); the reference-format weights."""
    root = tmp_path_factory.mktemp("eval")
    frames = list(moving_frames(astronaut(), 160, 120, FRAMES, photo_height=110))
    speech = tone(FRAMES / 25)
    speech[4 * 640 :] = 0  # frames 4-8 quiet: the last 2, 3 frames (120 ms) from speech, are silent for LipLeak
    (root / "outputs").mkdir()
    (root / "sources").mkdir()
    for name, images in (("a", _noisy(frames)), ("b", [np.full((120, 160, 3), 96, np.uint8)] * FRAMES),
                         ("c", _noisy(frames)[:6]), ("d", _noisy(frames))):
        write_clip(root / "outputs" / f"{name}.mp4", images, audio=speech)
    for name in ("a", "c", "e"):
        write_clip(root / "sources" / f"{name}.mp4", frames, audio=speech)
    torch.manual_seed(0)
    torch.save(SyncNet().state_dict(), root / "syncnet_v2.model")  # the reference's format: a pickled state dict
    return root


def _eval(args, capsys):
    code = main(["eval", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line]


def test_reference_pickle_and_its_safetensors_copy_score_the_same(clips, capsys, tmp_path):
    copy = tmp_path / "syncnet.safetensors"
    assert _eval(["--convert-syncnet", clips / "syncnet_v2.model", copy], capsys)[0] == 0
    from safetensors.torch import load_file

    reference = torch.load(clips / "syncnet_v2.model", weights_only=True)
    converted = load_file(copy)
    assert converted.keys() == reference.keys() and all(torch.equal(converted[k], reference[k]) for k in reference)
    scores = []
    for weights in (clips / "syncnet_v2.model", copy):
        report = tmp_path / f"{weights.suffix}.json"
        code, _, err = _eval([clips / "outputs" / "a.mp4", "--syncnet", weights, "--json", report], capsys)
        assert code == 0, err
        clip = json.loads(report.read_text())["clips"][0]
        scores.append([clip["lse_d"], clip["lse_c"], clip["av_offset"], *clip["offset_curve"]])
    assert len(scores[0]) == 34 and all(math.isfinite(v) for v in scores[0])
    assert scores[0] == scores[1]


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.mkdir, (self.marker,))


def test_a_pickle_that_would_run_code_is_refused(clips, capsys, tmp_path):
    evil = tmp_path / "syncnet_v2.model"
    marker = tmp_path / "code-ran"
    with open(evil, "wb") as f:
        pickle.dump({"netcnnaud.0.weight": _RunsCode(marker)}, f, protocol=2)
    code, out, err = _eval([clips / "outputs" / "a.mp4", "--syncnet", evil, "--json", tmp_path / "r.json"], capsys)
    assert code == 1 and len(err) == 1 and "would run code" in err[0] and str(evil) in err[0]
    assert not marker.exists() and not (tmp_path / "r.json").exists() and out == ""


def test_a_missing_weight_file_names_it_and_where_it_is_published(clips, capsys, tmp_path):
    code, out, err = _eval([clips / "outputs" / "a.mp4", "--syncnet", tmp_path / "syncnet_v2.model"], capsys)
    assert code == 1 and len(err) == 1 and "syncnet_v2.model" in err[0] and SYNCNET_URL in err[0], err
    assert "Traceback" not in out


def test_a_folder_with_bad_clips_scores_the_others(clips, capsys, tmp_path):
    """No face, an output shorter than its source, names without partners: one line each, and the good
    clips are still scored (exit 1, since some were not). Without weights the LSE scores are skipped
    with one line."""
    report = tmp_path / "r.json"
    code, out, err = _eval([clips / "outputs", "--sources", clips / "sources", "--json", report], capsys)
    assert code == 1
    expect = [
        "--sources e.mp4 has no output named e.*",
        "b.mp4: no file named b.* in",
        "d.mp4: no file named d.* in",
        "LSE-C / LSE-D skipped: no SyncNet weights",
        "FID skipped: no FID's Inception weights",
        "FVD skipped: no FVD's I3D weights",
        "CSIM skipped: no CSIM's ArcFace weights",
        "LPIPS skipped: no LPIPS's AlexNet or LPIPS's v0.1 linear layers weights",
        "b: no face found in",
        "c: " + str(clips / "outputs" / "c.mp4") + " has 6 frames, fewer than its source",
        "2 of 4 clips could not be scored: b, c",
    ]
    assert len(err) == len(expect) and all(want in line for want, line in zip(expect, err)), err
    clips_out = {c["name"]: c for c in json.loads(report.read_text())["clips"]}
    assert [n for n, c in clips_out.items() if c["error"] is None] == ["a", "d"]
    assert clips_out["a"]["psnr_frame"] > 25 and clips_out["d"]["psnr_frame"] is None
    assert clips_out["a"]["lse_d"] is None and clips_out["a"]["lipleak"] is not None
    assert "mean" in out and "95% interval" in out


def test_psnr_and_ssim_match_scikit_image(clips):
    """In memory: whole-frame PSNR is scikit-image's over the clip, SSIM the mean of its per-frame SSIM
    with Wang et al.'s settings; inside the regenerated box, PSNR is the benchmark's own formula on the
    same box."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from keysync.bench.metrics import psnr, regenerated_box
    from keysync.eval.score import score_frames
    from keysync.faces.backends import load_backend
    from keysync.faces.frontend import locate_face
    from keysync.media.source import ArraySource

    source = np.stack(list(moving_frames(astronaut(), 160, 120, FRAMES, photo_height=110)))
    output = np.stack(_noisy(source, seed=1))
    result = score_frames(output, tone(FRAMES / 25), fps=25, source_frames=source)
    values = result.values
    assert values["psnr_frame"] == pytest.approx(peak_signal_noise_ratio(source, output, data_range=255), abs=1e-9)
    ssim = np.mean([structural_similarity(s, o, channel_axis=2, data_range=255, gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False) for s, o in zip(source, output)])
    assert values["ssim_frame"] == pytest.approx(ssim, abs=1e-9) and values["ssim_frame"] < 0.99
    face = locate_face(ArraySource(output, 25).frames(), load_backend(), 224, "landmarks")
    box = regenerated_box(face.target.landmarks, 120, 160)
    assert 0.05 < box.mean() < 0.5
    assert values["psnr_box"] == pytest.approx(psnr(output, source, box), abs=1e-9)
    assert math.isnan(values["lse_d"]) and result.sync is None


def test_syncnet_crops_follow_the_reference_geometry():
    """A face box of half-size s centred at (x, y) gives the reference's crop: rows y - s .. y + 1.8 s,
    columns x - 1.4 s .. x + 1.4 s, and the median filter keeps a steady box steady."""
    from keysync.eval.crops import syncnet_boxes
    from keysync.faces.frontend import FaceLocation
    from keysync.faces.tracking import TargetFace

    landmarks = np.zeros((15, 68, 2))
    landmarks[:, :, 0] = np.linspace(300, 400, 68)  # x 300..400, y 200..280: s = 50, centre (350, 240)
    landmarks[:, :, 1] = np.linspace(200, 280, 68)
    target = TargetFace(landmarks, np.ones(15, bool), np.zeros(15, int), [0])
    boxes = syncnet_boxes(FaceLocation(None, target, [], np.arange(15)))
    corners = boxes[7].to_frame(np.array([[-0.5, -0.5], [223.5, 223.5]]))  # the crop's outer pixel edges
    np.testing.assert_allclose(corners, [[350 - 70, 240 - 50], [350 + 70, 240 + 90]], atol=1e-9)
    assert all(b == boxes[7] for b in boxes)
