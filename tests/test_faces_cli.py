"""``keysync faces`` on bad input: one line on stderr, exit status 1, and nothing written."""

import numpy as np
import pytest

from keysync import cli

from .conftest import assert_umask_modes
from .faces_media_clips import astronaut, clicks, moving_frames, write_clip
from .test_media_audio import _write_audio_only


@pytest.fixture
def run(monkeypatch, capfd):
    """Run ``keysync ARGS`` in-process (only this stage's commands) and return (status, stderr lines).

    ``capfd`` captures file descriptor 2 itself, so native libraries' stderr output counts too."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["keysync.faces.commands"])

    def _run(*args):
        status = cli.main([str(a) for a in args])
        return status, capfd.readouterr().err.strip().splitlines()

    return _run


@pytest.fixture
def video(tmp_path):
    return write_clip(tmp_path / "face.mp4", moving_frames(astronaut(), 320, 240, 5, 220, amplitude=4))


def _bad_inputs(tmp_path, video):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    speech = _write_audio_only(tmp_path / "speech.m4a", clicks(1.0, [0.5]), 16000)
    return junk, truncated, speech


@pytest.mark.parametrize("case", ["junk", "truncated", "no-video-stream", "audio-without-audio-stream"])
def test_bad_input_is_one_line_error_and_writes_nothing(tmp_path, video, run, case):
    junk, truncated, speech = _bad_inputs(tmp_path, video)
    args = {
        "junk": [junk],
        "truncated": [truncated],
        "no-video-stream": [speech],
        "audio-without-audio-stream": [video, "--audio", write_clip(tmp_path / "mute.mp4", [np.zeros((16, 16, 3), np.uint8)] * 3)],
    }[case]
    before = sorted(tmp_path.iterdir())
    status, err = run("faces", *args, "-o", tmp_path / "preview.mp4", "--json", tmp_path / "faces.json")
    assert status == 1
    assert len(err) == 1 and err[0].startswith("keysync faces: error: ")
    expected = {"junk": "cannot be read", "truncated": "cannot be read", "no-video-stream": "no video stream",
                "audio-without-audio-stream": "no audio stream"}[case]
    assert expected in err[0]
    assert sorted(tmp_path.iterdir()) == before


def test_error_after_tracking_is_still_one_line(tmp_path, video, run):
    status, err = run("faces", video, "--face-index", 7, "--json", tmp_path / "faces.json")
    assert status == 1
    assert err == ["keysync faces: error: face index 7 does not exist: the video has 1 face tracks (0-0); run keysync faces to list them"]
    assert not (tmp_path / "faces.json").exists()


def test_existing_output_is_kept_without_overwrite(tmp_path, video, run):
    report = tmp_path / "faces.json"
    report.write_text("mine")
    status, err = run("faces", video, "--json", report)
    assert status == 1 and "already exists" in err[0] and report.read_text() == "mine"
    status, err = run("faces", video, "--json", video, "--overwrite")
    assert status == 1 and "is also an input" in err[0]


def test_preview_video_keeps_frames_and_carries_the_new_audio(tmp_path, video, run):
    from keysync.media import load_audio, read_frames

    speech = _write_audio_only(tmp_path / "speech.m4a", clicks(0.2, [0.1]), 16000)
    status, err = run("faces", video, "--audio", speech, "-o", tmp_path / "preview.mp4")
    assert status == 0, err
    assert_umask_modes(tmp_path / "preview.mp4")
    frames = list(read_frames(tmp_path / "preview.mp4"))
    assert [f.time for f in frames] == [f.time for f in read_frames(video)]
    assert abs(len(load_audio(tmp_path / "preview.mp4")) - 3200) <= 1


def test_preview_tints_what_dub_pastes(tmp_path, video, run):
    """By default the tint stops at the line under the jaw that `keysync dub` pastes down to."""
    import cv2

    from keysync.media import read_frames

    for paste in ("jaw", "mask"):
        status, err = run("faces", video, "--paste", paste, "-o", tmp_path / f"{paste}.png")
        assert status == 0, err
    jaw, whole = (cv2.imread(str(tmp_path / f"{p}.png"))[..., ::-1].astype(int) for p in ("jaw", "mask"))
    source = [f.image for f in read_frames(video)][2].astype(int)  # the middle frame of the face's run
    tinted_jaw = (np.abs(jaw - source).max(-1) > 40).sum()
    tinted_whole = (np.abs(whole - source).max(-1) > 40).sum()
    assert 0 < tinted_jaw < 0.9 * tinted_whole


def test_preview_shows_exactly_what_dub_regenerates_and_pastes(tmp_path, video, run, monkeypatch):
    """`keysync faces` (default: the shipped model, as `dub`'s) draws the very crop box and paste mask that
    `dub` pastes through on that frame. The dub runs without diffusion (the source's latents) for speed:
    what is pasted where does not depend on the generated pixels."""
    from keysync.faces import preview
    from keysync.models.model import shipped_model_dir
    from keysync.pipeline import dub as dub_module
    from keysync.pipeline.sampling import SourceLatents

    from .faces_media_clips import tone, write_wav

    shown, pasted = [], []
    real_preview_paste, real_dub_paste = preview.paste_back, dub_module.paste_back
    monkeypatch.setattr(preview, "paste_back", lambda image, crop, box, mask, **kw: shown.append((box, mask)) or real_preview_paste(image, crop, box, mask, **kw))
    monkeypatch.setattr(dub_module, "paste_back", lambda image, crop, box, mask, **kw: pasted.append((box, mask)) or real_dub_paste(image, crop, box, mask, **kw))
    status, err = run("faces", video, "-o", tmp_path / "preview.png")
    assert status == 0, err
    pipe = dub_module.KeySyncPipeline.from_pretrained(shipped_model_dir())
    pipe.dubber_class = SourceLatents
    out = pipe(str(video), str(write_wav(tmp_path / "speech.mp4", tone(0.2))), progress=False)
    list(out.frames)
    (box, mask), = shown
    assert box.size == 128  # the shipped model's crops, not a generic 512 px box
    middle = 2  # the preview shows the middle frame of the face's run
    assert pasted[middle][0] == box
    assert np.array_equal(pasted[middle][1], mask) and mask.any()
