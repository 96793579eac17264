"""Tracking rules on a scripted back end: identity kept, gaps, newcomers, scene cuts, target choice."""

import numpy as np
import pytest

from keysync.errors import KeySyncError
from keysync.faces.backends import box_iou
from keysync.faces.ibug68 import landmark_box
from keysync.faces.tracking import present_runs, select_target, track_faces
from keysync.media.video import Frame

UNIT = np.random.default_rng(0).uniform(0.05, 0.95, (68, 2))  # a fixed face shape in a unit box


class ScriptedBackend:
    """Faces at known boxes per frame; ``blink`` frames make the landmark model miss face 0."""

    def __init__(self, script, blink=()):
        self.script, self.blink, self.frame = script, set(blink), 0
        self.detections = 0

    def faces(self):
        return self.script[self.frame]

    def detect(self, image):
        self.detections += 1
        return np.array([[*b, 0.9] for b in self.faces()]).reshape(-1, 5)

    def landmarks(self, image, box):
        for k, face in enumerate(self.faces()):
            if box_iou(face, box) > 0.2 and not (k == 0 and self.frame in self.blink):
                x0, y0, x1, y1 = face
                return UNIT * [x1 - x0, y1 - y0] + [x0, y0]
        return None


def _frames(backend, n, cut_at=()):
    for i in range(n):
        backend.frame = i
        shade = 200 if sum(i >= c for c in cut_at) % 2 else 40
        yield Frame(index=i, time=i / 25, image=np.full((90, 160, 3), shade, np.uint8))


def _moving(x, n, size=30.0, speed=1.0):
    return [(x + speed * i, 20.0, x + speed * i + size, 20.0 + size) for i in range(n)]


def test_two_faces_keep_their_identity_and_short_misses_are_filled():
    n = 40
    a, b = _moving(10, n, size=40), _moving(100, n, size=30, speed=0.5)
    backend = ScriptedBackend([[a[i], b[i]] for i in range(n)], blink=[7, 8])
    result = track_faces(_frames(backend, n), backend)
    assert len(result.tracks) == 2 and result.shot_starts == [0]
    assert result.tracks[0].frames == [f for f in range(n) if f not in (7, 8)]  # re-found, same track
    assert result.tracks[1].frames == list(range(n))
    assert backend.detections < 10  # not every frame
    target = select_target(result, smooth_seconds=0)
    assert target.present.all() and set(target.track_index) == {0}  # the larger face, gaps filled
    expected = UNIT * 40 + [10 + 7.5, 20]
    assert np.allclose(target.landmarks[7:9].mean(0), expected, atol=1e-6)
    assert np.allclose(select_target(result, face_index=1, smooth_seconds=0).landmarks[6], UNIT * 30 + [103, 20])
    assert select_target(result, point=(3, 120, 30)).track_index[0] == 1


def test_scene_cut_restarts_tracking_and_absent_frames_are_marked():
    n = 30
    face = _moving(20, n)
    script = [[face[i]] if not 10 <= i < 20 else [] for i in range(n)]
    backend = ScriptedBackend(script)
    result = track_faces(_frames(backend, n, cut_at=(10, 20)), backend)
    assert result.shot_starts == [0, 10, 20]
    assert [t.frame_ranges() for t in result.tracks] == [[(0, 9)], [(20, 29)]]
    target = select_target(result)  # default: one face per shot
    assert target.present.tolist() == [True] * 10 + [False] * 10 + [True] * 10
    assert present_runs(target.present, result.shot_starts) == [(0, 10), (20, 30)]
    only_second = select_target(result, face_index=1)
    assert not only_second.present[:20].any() and only_second.present[20:].all()
    with pytest.raises(KeySyncError, match="face index 2 does not exist"):
        select_target(result, face_index=2)
    with pytest.raises(KeySyncError, match="no tracked face contains"):
        select_target(result, point=(15, 30, 30))


def test_a_newcomer_is_picked_up_at_the_next_detection():
    n = 30
    a, b = _moving(10, n), _moving(100, n, speed=0)
    backend = ScriptedBackend([[a[i]] + ([b[i]] if i >= 5 else []) for i in range(n)])
    result = track_faces(_frames(backend, n), backend, detect_every=12)
    assert [t.frames[0] for t in result.tracks] == [0, 12]
    assert result.tracks[1].frames == list(range(12, n))


def test_a_fast_jump_keeps_the_track():
    n = 20
    face = [(10.0 + (40 if i >= 10 else 0), 20.0, 50.0 + (40 if i >= 10 else 0), 60.0) for i in range(n)]  # no overlap
    other = [(130.0, 40.0, 150.0, 60.0)] * n  # a smaller face further away is not taken for it
    backend = ScriptedBackend([[face[i], other[i]] for i in range(n)])
    result = track_faces(_frames(backend, n), backend)
    assert [t.frames for t in result.tracks] == [list(range(n)), list(range(n))]
    assert np.allclose(result.tracks[0].boxes[-1], landmark_box(UNIT * 40 + [50, 20]))


def _painted(backend, n, colours):
    """Frames with each scripted face painted in its colour (``colours[k]`` for face k of the script)."""
    for i in range(n):
        backend.frame = i
        image = np.full((90, 200, 3), 96, np.uint8)
        for face, colour in zip(backend.faces(), colours[i]):
            x0, y0, x1, y1 = (int(v) for v in face)
            image[y0:y1, x0:x1] = colour
        yield Frame(index=i, time=i / 25, image=image)


RED, GREEN, BLUE = (200, 60, 60), (60, 160, 60), (60, 60, 200)


@pytest.mark.parametrize("comes_back, away, rejoined", [(RED, 20, True), (GREEN, 20, False), (RED, 80, False)])
def test_a_face_that_comes_back_elsewhere_gets_its_old_track_if_it_looks_the_same(comes_back, away, rejoined):
    # a red face vanishes at frame 10 and a face shows up ``away`` frames later, too far away for the
    # tracker to follow; a blue face stays all along. Only the same face within 3 s gets the old track.
    n = 10 + away + 10
    other = (160.0, 20.0, 190.0, 50.0)
    script = [[(10.0, 20.0, 40.0, 50.0), other] if i < 10 else [other] if i < 10 + away else [(90.0, 20.0, 120.0, 50.0), other] for i in range(n)]
    colours = [[RED, BLUE] if i < 10 else [BLUE] if i < 10 + away else [comes_back, BLUE] for i in range(n)]
    backend = ScriptedBackend(script)
    result = track_faces(_painted(backend, n, colours), backend)
    back = [t for t in result.tracks if t.frames[-1] == n - 1 and t.boxes[-1][0] < 150]
    assert len(back) == 1 and back[0].frames[-1] == n - 1
    assert (back[0].frames[0] == 0) == rejoined
    assert len(result.tracks) == (2 if rejoined else 3)
    if rejoined:  # the absent frames stay absent: the dub passes them through
        assert back[0].frame_ranges()[0] == (0, 9) and back[0].frame_ranges()[1][0] >= 10 + away
        target = select_target(result, face_index=back[0].index, smooth_seconds=0)
        assert not target.present[10 : 10 + away].any()
        off = track_faces(_painted(backend, n, colours), backend, rejoin_seconds=0)
        assert len(off.tracks) == 3  # without rejoining, the same face comes back as a new track


def test_a_chosen_face_that_leaves_is_reported_in_one_line(caplog):
    n = 30
    a, b = _moving(10, n), _moving(100, n, speed=0)
    backend = ScriptedBackend([[a[i]] + ([b[i]] if i < 20 else []) for i in range(n)])
    result = track_faces(_frames(backend, n), backend)
    with caplog.at_level("WARNING", logger="keysync.faces"):
        select_target(result)  # the default choice, or a face that is always there: nothing to say
        select_target(result, face_index=0)
        assert caplog.records == []
        select_target(result, face_index=1)
    assert [r.getMessage() for r in caplog.records] == ["face 1 is in frames 0-19 of 30; frames after 19 pass through unchanged"]
