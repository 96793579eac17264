"""``keysync eval --report DIR``: the page a person reads. From a scored run of two short clips (built as
tests/test_eval_cli.py builds its clips, SyncNet weights random and seeded): the totals table holds the mean
and 95 % interval of each metric's per-clip values, every picture is a PNG, and a second run into the same
folder is refused with one line and leaves the first report as it was. With hand-made results (no
scoring): metrics not computed are one line per reason saying why, any metric name is shown, a failed write leaves the
earlier report, and --overwrite never empties a folder that is not a report."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

from keysync.cli import main
from keysync.errors import KeySyncError
from keysync.eval.syncnet import SyncNet

from .faces_media_clips import astronaut, moving_frames, tone, write_clip
from .test_eval_cli import FRAMES, _noisy

ROW = re.compile(r'<tr data-metric="(\w+)"><td>[^<]*</td><td class="num">([^<]*)</td><td class="num">([^<]*)</td>'
                 r'<td class="num">([^<]*)</td>')


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """Two clips (the same face, noise of two strengths) with their sources, scored with a report."""
    root = tmp_path_factory.mktemp("report")
    frames = list(moving_frames(astronaut(), 160, 120, FRAMES, photo_height=110))
    speech = tone(FRAMES / 25)
    speech[4 * 640 :] = 0  # frames 4-8 quiet: the last 2, 3 frames (120 ms) from speech, are silent for LipLeak
    for folder in ("outputs", "sources"):
        (root / folder).mkdir()
    for seed, name in enumerate(("quiet", "noisy")):
        noisy = _noisy(frames, seed) if name == "quiet" else _noisy(_noisy(_noisy(frames, seed), seed + 7), seed + 9)
        write_clip(root / "outputs" / f"{name}.mp4", noisy, audio=speech)
        write_clip(root / "sources" / f"{name}.mp4", frames, audio=speech)
    torch.manual_seed(0)
    torch.save(SyncNet().state_dict(), root / "syncnet_v2.model")
    argv = ["eval", root / "outputs", "--sources", root / "sources", "--syncnet", root / "syncnet_v2.model",
            "--json", root / "scores.json", "--report", root / "report"]
    assert main([str(a) for a in argv]) == 0
    return root


def _interval(values):
    """Mean and the 95 % interval of the mean (Student's t), computed here without keysync."""
    from scipy.stats import t

    values = np.asarray(values, np.float64)
    mean, half = values.mean(), t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def test_the_totals_table_holds_each_metrics_mean_and_interval(scored):
    page = (scored / "report" / "index.html").read_text()
    rows = {m: (mean, interval, clips) for m, mean, interval, clips in ROW.findall(page)}
    clips = json.loads((scored / "scores.json").read_text())["clips"]
    assert [c["name"] for c in clips] == ["noisy", "quiet"] and all(c["error"] is None for c in clips)
    expected = ["lse_d", "lse_c", "av_offset", "psnr_box", "ssim_box", "psnr_frame", "ssim_frame", "lipleak", "mouth_jitter"]
    assert [m for m in rows if m in expected] == expected, rows  # (and any metric added since, after them)
    for metric in expected:
        mean, low, high = _interval([c[metric] for c in clips])
        assert rows[metric] == (f"{mean:.4g}", f"{low:.4g} .. {high:.4g}", "2"), metric
    # the two clips differ, so the table is not one clip's numbers twice
    assert clips[0]["psnr_frame"] < float(rows["psnr_frame"][0]) < clips[1]["psnr_frame"]
    not_computed = " ".join(re.findall(r'data-metrics="([\w ]+)"', page)).split()
    assert not set(not_computed) & set(expected) and "SyncNet weights</th><td>" in page


def test_every_picture_is_a_png_the_page_shows(scored):
    folder = scored / "report"
    page = (folder / "index.html").read_text()
    shown = re.findall(r'<img src="([^"]+)"', page)
    per_metric = [f"clips_{m}.png" for m in ("lse_d", "lse_c", "av_offset", "psnr_box", "ssim_box", "psnr_frame", "ssim_frame", "lipleak", "mouth_jitter")]
    assert [name for name in shown if name in per_metric] == per_metric
    assert shown[-3:] == ["offset_curves.png", "low_sync_1.png", "low_sync_2.png"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(["index.html", *shown])
    for name in shown:
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        with Image.open(folder / name) as image:
            pixels = np.asarray(image.convert("RGB"))
        assert pixels.shape[0] >= 200 and pixels.shape[1] >= 300 and pixels.std() > 10, name
    assert "clips of lowest LSE-C" in page and "noisy: its least confident windows" in page


def test_a_second_run_into_the_folder_is_refused_and_leaves_it(scored, capsys):
    folder = scored / "report"
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    capsys.readouterr()
    code = main(["eval", str(scored / "outputs"), "--sources", str(scored / "sources"), "--report", str(folder)])
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line]
    assert code == 1 and len(err) == 1 and "already exists" in err[0] and "--overwrite" in err[0], err
    assert captured.out == ""  # refused before any clip was scored
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()} == before
    assert sorted(p.name for p in scored.iterdir()) == ["outputs", "report", "scores.json", "sources", "syncnet_v2.model"]


def _results():
    from keysync.eval.score import ClipResult

    results = [ClipResult("x"), ClipResult("y"), ClipResult("z", error="no face found in z.mp4")]
    for r, (lipleak, jitter) in zip(results, ((0.1, 0.02), (0.3, 0.04))):
        r.values.update(lipleak=lipleak, mouth_jitter=jitter)
    return results


def test_metrics_not_computed_are_one_line_per_reason_and_any_metric_is_shown(tmp_path):
    from keysync.eval.report import write_report
    from keysync.eval.score import summarise

    results = _results()
    total = {**summarise(results), "fid_test": {"mean": 12.5, "low": math.nan, "high": math.nan, "clips": 0}}
    write_report(tmp_path / "r", results, total)
    page = (tmp_path / "r" / "index.html").read_text()
    missing = dict(re.findall(r'<li class="note" data-metrics="([\w ]+)">([^<]*)</li>', page))
    assert list(missing)[:2] == ["lse_d lse_c av_offset", "psnr_box ssim_box psnr_frame ssim_frame"]  # then any metric added since
    assert missing["lse_d lse_c av_offset"].startswith("LSE-D, LSE-C, offset: not computed") and "--syncnet" in missing["lse_d lse_c av_offset"]
    assert "--sources" in missing["psnr_box ssim_box psnr_frame ssim_frame"]
    rows = {m: (mean, interval) for m, mean, interval, _ in ROW.findall(page)}
    assert rows == {"lipleak": ("0.2", "-1.071 .. 1.471"), "mouth_jitter": ("0.03", "-0.09706 .. 0.1571"), "fid_test": ("12.5", "-")}
    assert "no face found in z.mp4" in page and "Not shown: no clip has SyncNet scores" in page
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["clips_lipleak.png", "clips_mouth_jitter.png", "index.html"]


def test_overwrite_replaces_only_an_earlier_report_and_a_failed_write_leaves_it(tmp_path, monkeypatch):
    from keysync.eval import report

    results = _results()
    folder = tmp_path / "r"
    report.write_report(folder, results)
    first = (folder / "index.html").read_bytes()
    with pytest.raises(KeySyncError, match="already exists"):
        report.write_report(folder, results)

    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "_clip_chart", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        report.write_report(folder, results, overwrite=True)
    assert (folder / "index.html").read_bytes() == first and [p.name for p in tmp_path.iterdir()] == ["r"]
    monkeypatch.undo()
    results[0].values["lipleak"] = 0.2
    report.write_report(folder, results, overwrite=True)
    assert (folder / "index.html").read_bytes() != first

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(KeySyncError, match="not a keysync eval report"):
        report.write_report(mine, results, overwrite=True)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report.write_report(empty, results) == empty / "index.html"
