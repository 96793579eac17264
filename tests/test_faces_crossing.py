"""Two real faces cross, one hidden behind the other for about a second: it must come back as the same
face (issue 39), and dubbing it must say which frames pass through unchanged."""

import logging

import cv2
import numpy as np
import pytest

from keysync.faces.backends import MediaPipeBackend
from keysync.faces.tracking import select_target, track_faces
from keysync.media import read_frames

from .faces_media_clips import astronaut, group_photo, write_clip

FRAMES, WIDTH, HEIGHT = 60, 512, 288


def _head(photo, box, side):
    """A side x side square of ``photo`` around a face box (1.8 times its size: hair and shoulders)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    k = side / (1.8 * max(box[2] - box[0], box[3] - box[1]))
    matrix = np.float64([[k, 0, side / 2 - cx * k], [0, k, side / 2 - cy * k]])
    return cv2.warpAffine(photo, matrix, (side, side), flags=cv2.INTER_AREA)


def crossing_frames():
    """The astronaut (120 px head, face about 65 px) walks right behind a larger man from the group photo
    (200 px head) who walks left. Her face is hidden from about frame 19 to 42 (a second at 25 fps), and
    comes back about 140 px (two face sizes) right of where it vanished: too far for the tracker to
    follow it across the gap."""
    back = _head(astronaut(), (173.7, 67.8, 277.6, 171.7), 120)
    front = _head(group_photo(), (450.5, 279.3, 584.0, 412.8), 200)
    for i in range(FRAMES):
        image = np.full((HEIGHT, WIDTH, 3), 96, np.uint8)
        x_back, x_front, y = int(round(90 + 5.8 * i)), int(round(320 - 1.9 * i)), HEIGHT // 2
        image[y - 60 : y + 60, x_back - 60 : x_back + 60] = back
        image[y - 100 : y + 100, x_front - 100 : x_front + 100] = front
        yield image


@pytest.fixture(scope="module")
def crossing(tmp_path_factory):
    path = write_clip(tmp_path_factory.mktemp("crossing") / "crossing.mp4", crossing_frames())
    return track_faces(read_frames(path), MediaPipeBackend())


def test_the_hidden_face_comes_back_as_the_same_track(crossing):
    assert crossing.shot_starts == [0] and len(crossing.tracks) == 2
    her = next(t for t in crossing.tracks if t.boxes[0][0] < 100)  # starts on the left
    him = next(t for t in crossing.tracks if t is not her)
    assert him.frame_ranges() == [(0, FRAMES - 1)]
    (first, last), (back, end) = her.frame_ranges()
    assert first == 0 and 10 <= last < 25 and 38 <= back <= 56 and end == FRAMES - 1  # hidden around 19-42, found at a detection
    assert her.boxes[-1][0] > 350  # and she is found on the right, where she came out


def test_dubbing_the_hidden_face_says_which_frames_pass_through(crossing, caplog):
    her = next(t for t in crossing.tracks if t.boxes[0][0] < 100)
    with caplog.at_level(logging.WARNING, logger="keysync.faces"):
        target = select_target(crossing, face_index=her.index)
    (last, back) = her.frame_ranges()[0][1], her.frame_ranges()[1][0]
    assert not target.present[last + 1 : back].any() and target.present[back:].all()
    assert [r.getMessage() for r in caplog.records] == [
        f"face {her.index} is in frames 0-{last}, {back}-{FRAMES - 1} of {FRAMES}; the other frames pass through unchanged"
    ]
