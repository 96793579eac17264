"""``keysync batch --split-long S``: a video longer than S seconds is tracked once, dubbed in pieces by several
workers, and joined.

The pieces are runs of whole sampling windows. A window's keyframes do not depend on the windows before it
(only its first one, the previous window's last, is carried over, and a piece samples that window's
keyframes again), and every piece uses the one track, crops and reference frame of the tracking task, so
the joined frames equal the unsplit dub's (``KeySyncPipeline.__call__``'s ``windows``). The pieces are
written without sound and joined by copying their H.264 packets under the whole soundtrack, so there is no
seam to hide; the cuts still go where a seam would be least visible: at a shot cut, else the quietest
window boundary.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from ..constants import SAMPLE_RATE
from ..files import write_atomic

PLAN = "pieces.json"
SHOT_TOLERANCE = 0.1  # seconds between a window boundary and a shot cut for the cut to count as at the shot cut
QUIET_SPAN = 0.2  # seconds each side of a boundary over which the soundtrack's loudness is measured


def piece_path(folder: Path, index: int) -> Path:
    return Path(folder) / f"piece-{index}.mp4"


def choose_pieces(boundaries: np.ndarray, end: float, seconds: float, shot_times=(), audio: np.ndarray | None = None,
                  audio_rate: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """Split windows ``0 .. len(boundaries)`` (window i starts at ``boundaries[i]`` seconds; the last ends at
    ``end``) into runs of at most ``seconds`` where the windows allow (one window longer than that is a
    piece of its own). Each cut is taken, among the boundaries in the second half of the allowed span, at a
    shot cut if there is one, else where ``audio`` is quietest."""
    shots = np.asarray(list(shot_times), dtype=np.float64)

    def cost(b: int) -> tuple[int, float]:
        t = boundaries[b]
        at_shot = bool(len(shots)) and float(np.min(np.abs(shots - t))) <= SHOT_TOLERANCE
        if audio is None:
            return (not at_shot, 0.0)
        span = audio[max(0, int((t - QUIET_SPAN) * audio_rate)) : int((t + QUIET_SPAN) * audio_rate)]
        return (not at_shot, float(np.sqrt(np.mean(np.square(span, dtype=np.float64)))) if span.size else 0.0)

    count, start, cuts = len(boundaries), 0, []
    while end - boundaries[start] > seconds and start + 1 < count:
        fits = [b for b in range(start + 1, count) if boundaries[b] - boundaries[start] <= seconds] or [start + 1]
        late = [b for b in fits if boundaries[b] - boundaries[start] > seconds / 2] or fits
        start = min(late, key=cost)
        cuts.append(start)
    return list(zip([0, *cuts], [*cuts, count]))


def locate(pipe, job, options, folder: Path, seconds: float) -> list[tuple[int, int]]:
    """The tracking task: track the face once, keep the track (``face.npz``) and the soundtrack for the
    pieces, and plan the pieces (``pieces.json``, written last: its presence means the task is done)."""
    from ..faces.frontend import save_location

    result = pipe(job.video, job.audio, options=options)  # tracks and plans; no frame is dubbed until iterated
    save_location(result.location, folder / "face.npz")
    def save_audio(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, result.audio)

    write_atomic(folder / "soundtrack.npy", save_audio)
    times = np.asarray(result.times, dtype=np.float64)
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0 / float(result.rate)
    tracked = result.location.tracked
    pieces = choose_pieces(times[result.window_starts], times[-1] + step, seconds,  # the soundtrack's sample 0 is at time 0
                           shot_times=tracked.times[tracked.shot_starts[1:]], audio=result.audio)
    write_atomic(folder / PLAN, lambda tmp: tmp.write_text(json.dumps({"key": job.key, "pieces": pieces})))
    return pieces


def planned_pieces(folder: Path, key: str) -> list[tuple[int, int]] | None:
    """The pieces an earlier run's tracking task planned for this job (same key), or None."""
    try:
        plan = json.loads((Path(folder) / PLAN).read_text())
    except (OSError, ValueError):
        return None
    return [tuple(p) for p in plan["pieces"]] if plan.get("key") == key else None


def join_pieces(folder: Path, count: int, output: Path) -> Path:
    """The pieces in order, with the soundtrack, into ``output``; then the job's folder goes."""
    from ..media.writer import join_videos

    audio = np.load(Path(folder) / "soundtrack.npy")
    join_videos([piece_path(folder, i) for i in range(count)], output, audio=audio, overwrite=True)
    shutil.rmtree(folder, ignore_errors=True)
    return output
