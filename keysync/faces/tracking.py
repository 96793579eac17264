"""Follow every face through a video, then pick the one to dub.

``track_faces`` makes one streaming pass: faces are detected on the first frame, after each scene cut, and
every ``detect_every`` frames (to pick up newcomers); in between each known face is followed by running
the landmark model on a square around where it was. A face that is missed is looked for there again on
each of the next ``max_gap`` frames (and matched against detections), so that it keeps its track if it
comes back within the same shot. A scene cut ends every track.

A face hidden for longer, or one that comes back far from where it vanished (two people crossing, one
behind the other), first gets a new track; at the end, such a track is rejoined to one that ended
shortly before it in the same shot when the two are of similar size and look alike (``_appearance``).
The frames in between stay absent from the track: the dub passes them through unchanged.

``select_target`` turns the tracks into per-frame landmarks of one person (NaN where absent), smoothed
over time within each visible run. When a track chosen by the user covers only part of the video, it
says so on the ``keysync.faces`` logger (a warning, which the CLI prints as a ``keysync: ...`` line).
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.optimize import linear_sum_assignment

from ..errors import KeySyncError
from ..media.video import Frame
from .backends import LandmarkBackend, box_iou, square_around
from .ibug68 import landmark_box

log = logging.getLogger("keysync.faces")


@dataclass
class FaceTrack:
    """One person within one shot: the frames they are seen in, with a box and 68 landmarks per frame."""

    index: int
    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)  # (x0, y0, x1, y1) landmark boxes
    landmarks: list[np.ndarray] = field(default_factory=list)  # (68, 2) pixel coordinates

    @property
    def mean_area(self) -> float:
        return float(np.mean([(b[2] - b[0]) * (b[3] - b[1]) for b in self.boxes]))

    def frame_ranges(self) -> list[tuple[int, int]]:
        """Inclusive (first, last) runs of consecutive frames."""
        runs: list[tuple[int, int]] = []
        for f in self.frames:
            if runs and f == runs[-1][1] + 1:
                runs[-1] = (runs[-1][0], f)
            else:
                runs.append((f, f))
        return runs


@dataclass
class TrackingResult:
    """Everything one pass over a video found: frame times, shot starts and every face track."""

    width: int
    height: int
    times: np.ndarray  # (N,) seconds
    shot_starts: list[int]  # first frame of each shot (0 and every detected cut)
    tracks: list[FaceTrack]

    @property
    def num_frames(self) -> int:
        return len(self.times)

    def to_json(self) -> dict:
        """The tracks as plain data (what ``keysync faces --json`` writes)."""
        return {
            "width": self.width,
            "height": self.height,
            "num_frames": self.num_frames,
            "times": [round(float(t), 6) for t in self.times],
            "shot_starts": self.shot_starts,
            "tracks": [
                {
                    "index": t.index,
                    "frame_ranges": [list(r) for r in t.frame_ranges()],
                    "num_frames": len(t.frames),
                    "boxes": {str(f): [round(float(v), 1) for v in b] for f, b in zip(t.frames, t.boxes)},
                }
                for t in self.tracks
            ],
        }


@dataclass
class TargetFace:
    """The face to dub, frame by frame: 68 landmarks in original pixels, NaN where the face is absent."""

    landmarks: np.ndarray  # (N, 68, 2) float64
    present: np.ndarray  # (N,) bool
    track_index: np.ndarray  # (N,) int, -1 where absent
    shot_starts: list[int]


class _Live:
    """A track being followed; ``missed`` counts the frames since it was last seen (0: seen now)."""

    def __init__(self, track: FaceTrack):
        self.track, self.missed = track, 0

    @property
    def box(self) -> np.ndarray:
        return self.track.boxes[-1]


def _colour_histogram(image: np.ndarray) -> np.ndarray:
    """16-bin histograms of R, G and B over a 64x36 thumbnail, each summing to 1."""
    step = max(1, min(image.shape[:2]) // 144)  # subsample first: area-resizing a whole 4K frame is slow
    small = cv2.resize(image[::step, ::step], (64, 36), interpolation=cv2.INTER_AREA)
    counts = [np.bincount(small[..., c].ravel() // 16, minlength=16) for c in range(3)]
    return np.stack(counts).astype(np.float64) / (64 * 36)


def _appearance(image: np.ndarray, box) -> np.ndarray:
    """What a face looks like, to tell whether a face that comes back is one seen before: hue x saturation
    histograms (12 x 4 bins) of the upper half (hair, forehead) and the lower half of a square 1.5x the
    landmark box, 96 values summing to 1. Hue and saturation, unlike the R, G, B histograms of
    ``_colour_histogram``, barely change with brightness: on the seven faces of the test photos, rescaled,
    turned 10 degrees and made 10% brighter or darker, one person stayed within 0.14 of itself (total
    variation, ``_distance``) and two people were at least 0.21 apart; R, G, B histograms gave about 0.5
    and 0.15, so they could not tell people apart."""
    cx, cy, side = square_around(box, 1.5)
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in (max(cx - side / 2, 0), max(cy - side / 2, 0), min(cx + side / 2, w), min(cy + side / 2, h)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return np.full(96, 1 / 96)
    hsv = cv2.cvtColor(cv2.resize(image[y0:y1, x0:x1], (32, 32), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2HSV)
    halves = [cv2.calcHist([half], [0, 1], None, [12, 4], [0, 180, 0, 256]).ravel() for half in (hsv[:16], hsv[16:])]
    return np.concatenate(halves) / (2 * 16 * 32)


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total-variation distance between two histograms that sum to 1 (0: the same, 1: disjoint)."""
    return 0.5 * float(np.abs(a - b).sum())


def track_faces(
    frames: Iterable[Frame],
    backend: LandmarkBackend,
    detect_every: int = 12,
    max_gap: int = 25,
    cut_threshold: float = 0.25,
    min_iou: float = 0.3,
    rejoin_seconds: float = 3.0,
    observe: Callable[[Frame, list[FaceTrack]], None] | None = None,
) -> TrackingResult:
    """Track all faces of a frame stream (see module doc).

    ``cut_threshold``: total-variation distance (0-1, averaged over R, G, B) between the colour
    histograms of consecutive frames above which a scene cut is declared. Motion, even a fast pan,
    barely changes a frame's histogram (< 0.1 in the tests); a cut to another shot does (0.4-1). ``min_iou``: overlap needed to call two boxes the same face.
    ``rejoin_seconds``: the longest absence after which a face that comes back can still get its old track
    (see ``_rejoin``; 0 turns rejoining off). ``observe(frame, tracks)``: called after each frame with the
    tracks that have landmarks on it (their last), while the frame is at hand.
    """
    tracks: list[FaceTrack] = []
    live: list[_Live] = []
    times: list[float] = []
    shot_starts: list[int] = []
    previous = None
    width = height = 0
    since_detect = 0
    looks: dict[int, list] = {}  # track index -> [sum of appearances, count] over frames with no face near
    ahead = _DetectionsAhead(frames, backend, detect_every)
    try:
        for frame in ahead:
            image, i = frame.image, frame.index
            height, width = image.shape[:2]
            times.append(frame.time)
            histogram = _colour_histogram(image)
            cut = previous is None or 0.5 * float(np.abs(histogram - previous).sum()) / 3 > cut_threshold
            previous = histogram
            if cut:
                shot_starts.append(i)
                live = []
            # follow known faces (and look again where a missed one was last seen)
            lost = False
            for item in live:
                lm = backend.landmarks(image, item.box)
                if lm is not None and box_iou(landmark_box(lm), item.box) >= min_iou:
                    item.track.frames.append(i)
                    item.track.boxes.append(landmark_box(lm))
                    item.track.landmarks.append(lm)
                    item.missed = 0
                else:
                    lost = lost or item.missed == 0
                    item.missed += 1
            since_detect += 1
            if cut or lost or since_detect >= detect_every:
                since_detect = 0
                _detect_and_link(image, i, backend, tracks, live, min_iou, ahead.detections())
            live = [it for it in live if it.missed <= max_gap]
            _drop_duplicates(live, i)
            seen = [it.track for it in live if not it.missed]  # landmarks on this frame
            _note_appearances(image, seen, looks)
            if observe is not None:
                observe(frame, seen)
    finally:
        ahead.close()
    if not times:
        raise KeySyncError("the video has no frames")
    kept = [t for t in tracks if t.frames]
    if rejoin_seconds > 0:
        kept = _rejoin(kept, looks, np.array(times), shot_starts, rejoin_seconds)
    kept.sort(key=lambda t: (t.frames[0], t.boxes[0][0]))
    for k, t in enumerate(kept):
        t.index = k
    return TrackingResult(width, height, np.array(times), shot_starts, kept)


MAX_JUMP = 1.5  # a missed face may reappear up to this many face sizes away (fast motion, whip pans)


def _jump(box, last) -> float:
    """Centre distance in units of the last box's size; inf when the sizes differ by more than 2x."""
    size, other = np.sqrt((last[2] - last[0]) * (last[3] - last[1])), np.sqrt((box[2] - box[0]) * (box[3] - box[1]))
    if not 0.5 <= other / max(size, 1e-6) <= 2.0:
        return np.inf
    return float(np.hypot((box[0] + box[2] - last[0] - last[2]) / 2, (box[1] + box[3] - last[1] - last[3]) / 2) / max(size, 1e-6))


class _DetectionsAhead:
    """The frames to track, with face detection run ahead on the frame where the next periodic detection
    falls (``detect_every`` frames after the last detection), on a thread of its own, while the tracker
    follows faces on the frames before it: detection is the largest part of a tracker's time at 1080p (2.8
    of 6.4 core-seconds for 10 s), and the face mesh runs on one core. A detection depends on its image
    alone, so the boxes are the same whether run ahead or not; when a scene cut or a lost face calls for one
    earlier, that one runs now and the one run ahead is dropped. Only for back ends that allow it
    (``detect_ahead``), and only while ``detect_every`` frames fit in ``MEMORY`` bytes (at 4K 12 frames take
    300 MB)."""

    MEMORY = 512 * 2**20

    def __init__(self, frames: Iterable[Frame], backend: LandmarkBackend, detect_every: int):
        self._frames, self._backend, self._every = iter(frames), backend, detect_every
        self._queued: deque[Frame] = deque()  # read from ``frames``, not yet handed to the tracker
        self._position = -1  # of the frame last handed out, in the stream
        self._future: tuple[int, Future] | None = None  # (stream position, its detection)
        self._current: Frame | None = None  # the frame last handed out
        self._ended = False  # ``frames`` has given its last
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="keysync-detect-ahead") if getattr(backend, "detect_ahead", False) else None

    def __iter__(self):
        return self

    def __next__(self) -> Frame:
        if not self._queued:
            self._read()
        if not self._queued:
            raise StopIteration
        frame = self._queued.popleft()
        self._position += 1
        self._current = frame
        return frame

    def detections(self) -> np.ndarray:
        """The boxes on the frame last handed out; then starts detecting on the frame ``detect_every`` on."""
        ready, self._future = self._future, None
        found = ready[1].result() if ready is not None and ready[0] == self._position else self._backend.detect(self._current.image)
        self._run_ahead()
        return found

    def _run_ahead(self) -> None:
        image = self._current.image
        if self._pool is None or self._every * image.nbytes > self.MEMORY:
            return
        while len(self._queued) < self._every and self._read():
            pass
        if len(self._queued) < self._every:
            return
        self._future = (self._position + self._every, self._pool.submit(self._backend.detect, self._queued[self._every - 1].image))

    def _read(self) -> bool:
        """Queue the next frame; False at the end. An ended stream is not read again: some iterators (a
        progress bar that Gradio tracks) fail, rather than stop again, when asked for more."""
        frame = None if self._ended else next(self._frames, None)
        self._ended = frame is None
        if frame is not None:
            self._queued.append(frame)
        return frame is not None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _detect_and_link(image, i, backend, tracks, live, min_iou, found: np.ndarray) -> None:
    """Link ``found``, the faces detected on ``image``. A detection near a missed face (closest first, at
    most ``MAX_JUMP`` face sizes away, similar size) continues its track; detections not covered by a face
    seen on this frame start new tracks."""
    found = list(found)
    seen_now = [it for it in live if not it.missed]
    waiting = [it for it in live if it.missed]
    # detections already covered by a face tracked on this frame are not new
    found = [b for b in found if all(box_iou(b, it.box) < min_iou for it in seen_now)]
    if waiting and found:
        cost = np.array([[_jump(b, it.box) for it in waiting] for b in found])
        rows, cols = linear_sum_assignment(np.minimum(cost, 1e6))
        used = set()
        for r, c in zip(rows, cols):
            if cost[r, c] <= MAX_JUMP and _attach(image, i, backend, waiting[c], found[r]):
                used.add(r)
        found = [b for k, b in enumerate(found) if k not in used]
    for box in found:
        item = _Live(FaceTrack(index=len(tracks)))
        if _attach(image, i, backend, item, box):
            tracks.append(item.track)
            live.append(item)


def _attach(image, i, backend, item: _Live, box) -> bool:
    lm = backend.landmarks(image, box)
    if lm is None or box_iou(landmark_box(lm), box) < 0.2:
        return False
    item.track.frames.append(i)
    item.track.boxes.append(landmark_box(lm))
    item.track.landmarks.append(lm)
    item.missed = 0
    return True


def _note_appearances(image, seen: list[FaceTrack], looks: dict[int, list]) -> None:
    """Add this frame's appearance of each face seen on it, unless another face is close: two faces
    crossing mix their colours (and the one behind is half hidden) before the tracker loses one."""
    near = [square_around(t.boxes[-1], 2.0) for t in seen]
    squares = [(cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2) for cx, cy, s in near]
    for k, track in enumerate(seen):
        if all(box_iou(squares[k], other) == 0 for j, other in enumerate(squares) if j != k):
            look = looks.setdefault(track.index, [0.0, 0])
            look[0] = look[0] + _appearance(image, track.boxes[-1])
            look[1] += 1


REJOIN_DISTANCE = 0.2  # appearance distance under which two tracks may be one person (see ``_appearance``)
REJOIN_SIZE = 1.5  # and at most this ratio between their face sizes where one ends and the other starts


def _rejoin(tracks: list[FaceTrack], looks: dict[int, list], times: np.ndarray, shot_starts: list[int], seconds: float) -> list[FaceTrack]:
    """Append each track, in order of its first frame, to the track it most resembles among those that
    ended at most ``seconds`` before it in the same shot, of similar size and within ``REJOIN_DISTANCE``.

    This runs after tracking so that both sides are judged by their clear frames (see
    ``_note_appearances``): a face coming out from behind another is still half covered when it is
    first detected. A track with no clear frame is never rejoined (no evidence, no merge)."""
    def size(boxes):
        return float(np.median([np.sqrt((b[2] - b[0]) * (b[3] - b[1])) for b in boxes]))

    def look(t):
        total, count = looks.get(t.index, (0.0, 0))
        return total / count if count else None

    out: list[FaceTrack] = []
    for new in sorted(tracks, key=lambda t: t.frames[0]):
        start, mine = new.frames[0], look(new)
        best, best_distance = None, REJOIN_DISTANCE
        for old in out:
            end, theirs = old.frames[-1], look(old)
            if mine is None or theirs is None or end >= start or times[start] - times[end] > seconds:
                continue
            if any(end < s <= start for s in shot_starts):
                continue
            a, b = size(old.boxes[-5:]), size(new.boxes[:5])
            if max(a, b) > REJOIN_SIZE * min(a, b):
                continue
            distance = _distance(mine, theirs)
            if distance < best_distance:
                best, best_distance = old, distance
        if best is None:
            out.append(new)
            continue
        best.frames += new.frames
        best.boxes += new.boxes
        best.landmarks += new.landmarks
        a, b = looks[best.index], looks[new.index]
        looks[best.index] = [a[0] + b[0], a[1] + b[1]]
    return out


def _drop_duplicates(live: list[_Live], i: int) -> None:
    """Two live tracks on the same face on this frame: keep the older one."""
    current = [it for it in live if not it.missed and it.track.frames and it.track.frames[-1] == i]
    for a in range(len(current)):
        for b in range(a + 1, len(current)):
            x, y = current[a], current[b]
            if x.missed or y.missed or box_iou(x.box, y.box) < 0.5:
                continue
            young = y if len(y.track.frames) < len(x.track.frames) else x
            for seq in (young.track.frames, young.track.boxes, young.track.landmarks):
                seq.pop()
            young.missed = 1
    live[:] = [it for it in live if not (it.missed and not it.track.frames)]


def select_target(
    result: TrackingResult,
    face_index: int | None = None,
    point: tuple[int, float, float] | None = None,
    smooth_seconds: float = 0.04,
    fill_gaps: int = 5,
) -> TargetFace:
    """Pick the face to dub and smooth its landmarks over time.

    Default: in every shot, the track with the largest mean box area times frames seen. ``face_index``: track ``K`` as listed
    by ``keysync faces``. ``point=(frame, x, y)``: the track whose box contains that pixel on that frame.
    ``smooth_seconds``: Gaussian sigma of the temporal landmark smoothing (0 disables it).
    ``fill_gaps``: a track's gaps of at most this many frames (a missed detection, not a person leaving)
    are filled by linear interpolation, so the dub does not flash the original mouth for a frame.
    """
    n = result.num_frames
    chosen: list[FaceTrack]
    if face_index is not None:
        if not 0 <= face_index < len(result.tracks):
            raise KeySyncError(f"face index {face_index} does not exist: the video has {len(result.tracks)} face tracks (0-{len(result.tracks) - 1}); run keysync faces to list them")
        chosen = [result.tracks[face_index]]
    elif point is not None:
        f, x, y = point
        chosen = [t for t in result.tracks if f in t.frames and _contains(t.boxes[t.frames.index(f)], x, y)]
        if not chosen:
            raise KeySyncError(f"no tracked face contains pixel ({x}, {y}) on frame {f}; run keysync faces to see the boxes")
        chosen = chosen[:1]
    else:
        bounds = result.shot_starts + [n]
        chosen = []
        for start, end in zip(bounds[:-1], bounds[1:]):
            in_shot = [t for t in result.tracks if start <= t.frames[0] < end]
            if in_shot:
                chosen.append(max(in_shot, key=lambda t: t.mean_area * len(t.frames)))
    landmarks = np.full((n, 68, 2), np.nan)
    track_index = np.full(n, -1, dtype=np.int64)
    for t in chosen:
        landmarks[t.frames] = np.stack(t.landmarks)
        track_index[t.frames] = t.index
        for a, b in zip(t.frames[:-1], t.frames[1:]):
            if 1 < b - a <= fill_gaps + 1:
                w = (np.arange(a + 1, b) - a)[:, None, None] / (b - a)
                landmarks[a + 1 : b] = (1 - w) * landmarks[a] + w * landmarks[b]
                track_index[a + 1 : b] = t.index
    present = track_index >= 0
    if face_index is not None or point is not None:
        _say_where(chosen[0].index, track_index == chosen[0].index)
    if smooth_seconds > 0 and n > 1:
        step = float(np.median(np.diff(result.times)))
        landmarks = smooth_runs(landmarks, present, result.shot_starts, sigma=smooth_seconds / max(step, 1e-6))
    return TargetFace(landmarks, present, track_index, list(result.shot_starts))


def _say_where(index: int, dubbed: np.ndarray) -> None:
    """One line when the face the user picked is not in every frame (it leaves, arrives late, or is hidden
    for a while): otherwise the dub would pass those frames through unchanged without a word."""
    n = len(dubbed)
    runs = [(a, b - 1) for a, b in present_runs(dubbed, [])]
    if runs == [(0, n - 1)]:
        return
    rest = f"frames after {runs[0][1]}" if len(runs) == 1 and runs[0][0] == 0 else "the other frames"
    spans = ", ".join(f"{a}-{b}" for a, b in runs)
    log.warning("face %d is in frames %s of %d; %s pass through unchanged", index, spans, n, rest)


def _contains(box, x, y) -> bool:
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def present_runs(present: np.ndarray, shot_starts: list[int]) -> list[tuple[int, int]]:
    """Half-open (start, end) runs of consecutive present frames that do not cross a shot start."""
    cuts = set(shot_starts)
    runs, start = [], None
    for i, p in enumerate(present):
        if start is not None and (not p or i in cuts):
            runs.append((start, i))
            start = None
        if p and start is None:
            start = i
    if start is not None:
        runs.append((start, len(present)))
    return runs


def smooth_runs(values: np.ndarray, present: np.ndarray, shot_starts: list[int], sigma: float) -> np.ndarray:
    """Gaussian-smooth ``values`` along axis 0 separately within each present run (edges: nearest)."""
    out = values.copy()
    for start, end in present_runs(present, shot_starts):
        if end - start > 1 and sigma > 0:
            out[start:end] = gaussian_filter1d(values[start:end], sigma, axis=0, mode="nearest")
    return out
