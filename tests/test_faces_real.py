"""Real faces nobody here drew (the astronaut and the six-person group photo), moved by a known motion.

The motion is known, so every frame has an expected position for every face: the landmarks found on
the still photo, moved by that frame's matrix.
"""

import json

import numpy as np
import pytest

from keysync import cli
from keysync.faces.backends import MediaPipeBackend
from keysync.faces.crops import cut_crop, plan_crops
from keysync.faces.masks import build_mask
from keysync.faces.paste import frame_weights, paste_back
from keysync.faces.render import render_through_crops
from keysync.faces.tracking import select_target, track_faces
from keysync.media import read_frames
from keysync.media.video import Frame

from .faces_media_clips import astronaut, group_photo, motion, moving_frames, write_clip

FRAMES = 25  # 1 s at 25 fps
CLIPS = {
    "astronaut-1920x1080": (astronaut, 1920, 1080, 900),
    "astronaut-1080x1920": (astronaut, 1080, 1920, 900),
    "group-1920x1080": (group_photo, 1920, 1080, 1000),
    "group-1080x1920": (group_photo, 1080, 1920, 692),
}
EYES = list(range(36, 48))
LOWER_FACE = [8, 29, 30, 31, 33, 35, *range(48, 68)]  # nose below the bridge, lips, chin


@pytest.fixture(scope="module")
def backend():
    return MediaPipeBackend()


@pytest.fixture(scope="module")
def clips(tmp_path_factory, backend):
    """name -> (path, tracking result, reference landmarks per face (F, 68, 2) in photo pixels, matrices)."""
    out = {}
    folder = tmp_path_factory.mktemp("real")
    for name, (load, w, h, photo_h) in CLIPS.items():
        photo = load()
        path = write_clip(folder / f"{name}.mp4", moving_frames(photo, w, h, FRAMES, photo_h))
        reference = np.stack([backend.landmarks(photo, box) for box in backend.detect(photo)])
        out[name] = (path, track_faces(read_frames(path), backend), reference, motion(photo.shape, w, h, FRAMES, photo_h))
    return out


def _expected(reference, matrices):
    """(faces, frames, 68, 2): the still photo's landmarks moved by each frame's matrix."""
    return np.stack([[lm @ m[:, :2].T + m[:, 2] for m in matrices] for lm in reference])


def _iod(lm):
    return float(np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0)))


@pytest.mark.parametrize("name", list(CLIPS))
def test_each_face_is_found_in_every_frame_and_stays_the_same_person(clips, name):
    path, result, reference, matrices = clips[name]
    expected = _expected(reference, matrices)
    assert len(result.tracks) == len(reference) == (1 if name.startswith("astronaut") else 6)
    people = set()
    for k in range(len(result.tracks)):
        target = select_target(result, face_index=k)
        assert target.present.all()
        # the same expected face is closest on every frame, and close in inter-ocular units
        errors = np.linalg.norm(expected - target.landmarks[None], axis=-1).mean(-1)  # (faces, frames)
        person = int(np.argmin(errors[:, 0]))
        assert (np.argmin(errors, axis=0) == person).all()
        # mean landmark error; the portrait group's faces are ~85 px wide (inter-ocular ~23 px)
        assert errors[person].max() < 0.35 * _iod(expected[person, 0])
        people.add(person)
    assert len(people) == len(reference)


@pytest.mark.parametrize("name", list(CLIPS))
def test_box_mask_covers_nose_bridge_to_chin_and_never_the_eyes(clips, name):
    path, result, reference, matrices = clips[name]
    target = select_target(result)  # default: the largest face
    expected = _expected(reference, matrices)
    person = int(np.argmin(np.linalg.norm(expected[:, 0] - target.landmarks[0], axis=-1).mean(-1)))
    crops = plan_crops(target, result.times, size=512)
    for i, box in enumerate(crops):
        mask = build_mask("box", box.to_crop(target.landmarks[i]), 512)
        truth = np.rint(box.to_crop(expected[person, i])).astype(int)
        inside = lambda idx: mask[np.clip(truth[idx, 1], 0, 511), np.clip(truth[idx, 0], 0, 511)]  # noqa: E731
        assert inside(LOWER_FACE).all(), f"frame {i}: part of the lower face is outside the mask"
        assert not inside(EYES).any(), f"frame {i}: the mask reaches an eye"
        assert not mask[: max(0, truth[EYES, 1].max())].any()


@pytest.mark.parametrize("name", list(CLIPS))
def test_unmodified_crop_pastes_back_to_the_same_frame(clips, name):
    path, result, reference, matrices = clips[name]
    target = select_target(result)
    crops = plan_crops(target, result.times, size=512)
    synthetic = CLIPS[name]
    originals = moving_frames(synthetic[0](), synthetic[1], synthetic[2], FRAMES, synthetic[3])
    for frame, original in zip(read_frames(path), originals):
        box = crops[frame.index]
        mask = build_mask("box", box.to_crop(target.landmarks[frame.index]), 512)
        pasted = paste_back(frame.image, cut_crop(frame.image, box), box, mask)
        rows, cols, alpha = frame_weights(frame.image.shape, box, mask)
        outside = np.ones(frame.image.shape[:2], bool)
        outside[rows, cols] = alpha == 0
        assert np.array_equal(pasted[outside], frame.image[outside])
        region = ~outside
        roundtrip = np.abs(pasted[region].astype(int) - frame.image[region]).mean()
        codec = np.abs(frame.image[region].astype(int) - original[region]).mean()
        assert roundtrip <= codec, f"frame {frame.index}: crop round trip {roundtrip:.2f} > codec noise {codec:.2f}"


def test_faces_json_lists_one_stable_track_per_person(clips, tmp_path, monkeypatch, capsys):
    path, result, reference, matrices = clips["group-1920x1080"]
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["keysync.faces.commands"])
    report, preview = tmp_path / "faces.json", tmp_path / "preview.png"
    assert cli.main(["faces", str(path), "--face-index", "3", "--json", str(report), "-o", str(preview)]) == 0
    data = json.loads(report.read_text())
    assert len(data["tracks"]) == 6
    assert all(t["frame_ranges"] == [[0, FRAMES - 1]] and len(t["boxes"]) == FRAMES for t in data["tracks"])
    assert data["target"]["tracks"] == [3] and data["target"]["frames"] == list(range(FRAMES))
    assert preview.stat().st_size > 10000
    assert "face 5: frames 0-24" in capsys.readouterr().out


def test_black_cut_in_the_middle_passes_through_unchanged(tmp_path, backend):
    w, h, n = 640, 360, 25
    face = list(moving_frames(astronaut(), w, h, n, 320, amplitude=15))
    frames = face + [np.zeros((h, w, 3), np.uint8)] * n + face
    path = write_clip(tmp_path / "cut.mp4", frames)
    result = track_faces(read_frames(path), backend)
    assert result.shot_starts == [0, n, 2 * n]
    target = select_target(result)
    assert target.present.tolist() == [True] * n + [False] * n + [True] * n
    out = render_through_crops(
        path, tmp_path / "out.mp4", target, plan_crops(target, result.times, size=128),
        edit=lambda crop, mask, i: np.where(mask[..., None] > 0, 255 - crop, crop).astype(np.uint8),
    )
    before, after = list(read_frames(path)), list(read_frames(out))
    assert len(after) == len(before) and [f.time for f in after] == [f.time for f in before]
    for a, b in zip(before, after):
        diff = np.abs(a.image.astype(int) - b.image).mean()
        if n <= a.index < 2 * n:
            assert diff < 0.5  # the black second: untouched (only the re-encode)
        else:
            assert diff > 1.0  # the face frames were edited, so the test can tell


def test_fast_motion_is_neither_a_cut_nor_a_new_person(tmp_path, backend):
    # the face (about 40 px) jumps about its own size every frame
    path = write_clip(tmp_path / "fast.mp4", moving_frames(astronaut(), 320, 240, 5, 220, amplitude=40))
    result = track_faces(read_frames(path), backend)
    assert result.shot_starts == [0]
    assert [t.frames for t in result.tracks] == [[0, 1, 2, 3, 4]]


class _NoNextAfterTheEnd:
    """An iterator that fails when asked for more after its end, as a progress bar Gradio tracks does."""

    def __init__(self, items):
        self.items, self.ended = iter(items), False

    def __iter__(self):
        return self

    def __next__(self):
        if self.ended:
            raise IndexError("asked for more after the end")
        try:
            return next(self.items)
        except StopIteration:
            self.ended = True
            raise


def test_detecting_ahead_gives_the_same_tracks(monkeypatch):
    """The periodic detections run on a thread ahead of the tracker: the tracks must be exactly those of
    detecting in turn. A cut to the group photo halfway makes an unscheduled detection, which drops the
    one run ahead for the old schedule; reading ahead reaches the stream's end before the tracker does."""
    import threading

    frames = [*moving_frames(astronaut(), 480, 270, 30, photo_height=220), *moving_frames(group_photo(), 480, 270, 30, photo_height=260)]
    stream = [Frame(index=i, time=i / 25, image=image) for i, image in enumerate(frames)]
    results, threads = {}, []
    for ahead in (False, True):
        backend = MediaPipeBackend(threads=1)
        monkeypatch.setattr(backend, "detect_ahead", ahead, raising=False)
        detect = backend.detect
        monkeypatch.setattr(backend, "detect", lambda image, detect=detect, on=ahead: threads.append((on, threading.current_thread().name)) or detect(image))
        results[ahead] = track_faces(_NoNextAfterTheEnd(stream), backend)
    plain, ahead = results[False], results[True]
    assert plain.shot_starts == ahead.shot_starts == [0, 30]
    assert len(plain.tracks) == len(ahead.tracks) >= 4  # the astronaut and three or more of the group
    for a, b in zip(plain.tracks, ahead.tracks):
        assert a.frames == b.frames and np.array_equal(np.stack(a.landmarks), np.stack(b.landmarks))
    assert all(name == "MainThread" for on, name in threads if not on)
    assert sum(name.startswith("keysync-detect-ahead") for on, name in threads if on) >= 3
