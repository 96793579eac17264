"""keysync occluders: SAM 2 tracking from clicks, backward and forward, into the masks dub reads (plumbing,
with a tiny random SAM 2: the masks mean nothing, the order, geometry and file do)."""

import cv2
import numpy as np
import pytest
import torch

from keysync.cli import main
from keysync.errors import KeySyncError
from keysync.faces.occluders import MEAN, STD, Clicks, load_segmenter, track_occluders
from keysync.media.video import probe_video

from .faces_media_clips import write_clip
from .micro import micro_segmenter

H, W, FRAMES, CLICK = 48, 80, 10, 6


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sam2")
    micro_segmenter(folder)
    return folder


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    rng = np.random.default_rng(0)
    frames = [cv2.GaussianBlur(rng.integers(0, 255, (H, W, 3), dtype=np.uint8), (5, 5), 0) for _ in range(FRAMES)]
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames)


def _library_logits(model, frames, clicks):
    """transformers' own propagation over the whole video held in memory: backward from the click, then forward."""
    from transformers import Sam2VideoInferenceSession

    from keysync.faces.occluders import _Tracker

    size = model.config.image_size
    video = torch.stack([torch.from_numpy((cv2.resize(f, (size, size)).astype(np.float32) / 255 - MEAN) / STD).permute(2, 0, 1) for f in frames])
    tracker = _Tracker(model, H, W)
    tracker.session = Sam2VideoInferenceSession(video=video, video_height=H, video_width=W, dtype=torch.float32)
    tracker.click(clicks)
    logits = {}
    for reverse in (True, False):
        for out in model.propagate_in_video_iterator(tracker.session, start_frame_idx=clicks.frame, reverse=reverse):
            logits.setdefault(out.frame_idx, out.pred_masks[0, 0].numpy())
    return logits


def test_tracks_backward_and_forward_like_transformers_whole_video_propagation(segmenter, clip, tmp_path):
    from keysync.media.video import read_frames

    model = load_segmenter(str(segmenter))
    calls = []
    hook = model.register_forward_hook(
        lambda m, args, kwargs, out: calls.append((kwargs["frame_idx"], kwargs["reverse"], out.pred_masks[0, 0].numpy().copy())),
        with_kwargs=True,
    )
    clicks = Clicks(CLICK, [(40.0, 20.0), (44.0, 24.0)], [(5.0, 40.0)])
    out = track_occluders(clip, tmp_path / "masks.npy", clicks, model, progress=False)
    hook.remove()

    # the click's frame, then back to frame 0, then on to the last: memories older than SAM 2 reads are
    # dropped on the way (the micro model reads 4 frames back), which must not change a result
    assert [(i, r) for i, r, _ in calls] == [(CLICK, False)] + [(i, True) for i in range(CLICK - 1, -1, -1)] + [(i, False) for i in range(CLICK + 1, FRAMES)]
    frames = [f.image for f in read_frames(clip)]
    reference = _library_logits(model, frames, clicks)
    for index, _, logits in calls:
        np.testing.assert_allclose(logits, reference[index], atol=1e-7, rtol=0, err_msg=f"frame {index}")

    masks = np.load(out)
    assert masks.shape == (FRAMES, H, W) and masks.dtype == np.uint8  # what dub --occluders reads
    for index, _, logits in calls:  # each frame's mask at its place, at the video's size
        assert np.array_equal(masks[index], (cv2.resize(logits, (W, H)) > 0).astype(np.uint8)), index
    assert not list(tmp_path.glob(".*")), "temporary files left behind"


def test_cli_writes_masks_and_preview_and_refuses_bad_input(segmenter, clip, tmp_path, capsys):
    masks, preview = tmp_path / "masks.npy", tmp_path / "preview.mp4"
    base = ["occluders", str(clip), "-o", str(masks), "--segmenter", str(segmenter)]
    assert main(base + ["--point", "30,20", "--frame", "2", "--preview", str(preview)]) == 0
    assert np.load(masks).shape == (FRAMES, H, W)
    assert probe_video(preview).frame_count == FRAMES

    stamp = masks.stat().st_mtime_ns
    assert main(base + ["--point", "30,20"]) == 1  # an existing output is kept
    assert "already exists" in capsys.readouterr().err and masks.stat().st_mtime_ns == stamp

    for args, message in [
        (["--point", "90,20"], "outside the 80x48 frame"),
        (["--point", "30;20"], "is not X,Y"),
        ([], "no click on the occluder"),
        (["--point", "30,20", "--frame", "10"], "past the video's last frame (9)"),
    ]:
        assert main(["occluders", str(clip), "-o", str(tmp_path / "bad.npy"), "--segmenter", str(segmenter), *args]) == 1
        assert message in capsys.readouterr().err
        assert not (tmp_path / "bad.npy").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks.npy", "preview.mp4"]


def test_missing_segmenter_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(KeySyncError, match="hf download facebook/sam2.1-hiera-tiny"):
        load_segmenter(str(tmp_path / "no-such-folder"))


def test_dub_tracks_clicked_occluders_like_the_occluders_command(segmenter, tmp_path, monkeypatch, capsys):
    from keysync.pipeline.dub import KeySyncPipeline

    from .faces_media_clips import astronaut, moving_frames, tone, write_wav
    from .micro import micro_model

    video = write_clip(tmp_path / "in.mp4", moving_frames(astronaut(), 320, 240, 10, photo_height=220))
    audio = write_wav(tmp_path / "speech.mp4", tone(0.4))
    clicks = ["160,150", "170,160"], ["150,60"], 3
    occluders_cmd = ["occluders", str(video), "-o", str(tmp_path / "masks.npy"), "--segmenter", str(segmenter), "--frame", "3"]
    assert main(occluders_cmd + ["--point", clicks[0][0], "--point", clicks[0][1], "--negative", clicks[1][0]]) == 0

    monkeypatch.setattr(KeySyncPipeline, "from_pretrained", classmethod(lambda cls, *a, **k: cls(micro_model(audio_window=1))))
    used, real_call = [], KeySyncPipeline.dub_file

    def call(self, video, audio, output, options, **kw):
        used.append(np.load(options.occluders))  # the masks dub reads, while they exist
        return real_call(self, video, audio, output, options, **kw)

    monkeypatch.setattr(KeySyncPipeline, "dub_file", call)
    dub = ["dub", str(video), str(audio), "--quiet", "--model", "small", "--segmenter", str(segmenter), "--occluder-frame", "3",
           "--occluder-point", clicks[0][0], "--occluder-point", clicks[0][1], "--occluder-negative", clicks[1][0]]
    assert main(dub + ["-o", str(tmp_path / "out.mp4")]) == 0
    assert len(used) == 1 and np.array_equal(used[0], np.load(tmp_path / "masks.npy"))
    assert probe_video(tmp_path / "out.mp4").frame_count == 10
    capsys.readouterr()

    for args, message in [
        (["--occluders", str(tmp_path / "masks.npy")], "either --occluders NPY or --occluder-point"),
        (["--occluder-frame", "10"], "--occluder-frame 10 is not a frame of the video (its last is 9)"),
        (["--occluder-point", "400,10"], "outside the 320x240 frame"),
    ]:
        assert main(dub + args + ["-o", str(tmp_path / "bad.mp4")]) == 1
        assert message in capsys.readouterr().err
    plain = ["dub", str(video), str(audio), "-o", str(tmp_path / "bad.mp4"), "--model", "small", "--segmenter", str(segmenter)]
    assert main(plain) == 1 and "need --occluder-point" in capsys.readouterr().err
    assert len(used) == 1  # refused before any work
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "masks.npy", "out.mp4", "speech.mp4"]  # no scratch left
