"""Speed presets: how many network evaluations each sampling stage spends.

A stage's schedule is its number of Euler steps (network calls per clip) and how many of the first steps
run the three guidance variants; the later steps run one conditional pass (audio and reference), a
guidance interval in the sense of Kynkaenniemi et al. (2024): at low noise the guided and conditional
estimates nearly agree, so guidance there costs three evaluations for little. The interpolation stage
does ~93 % of the work at the official schedule (13 output frames per 14-frame clip, against 169 per
keyframe clip), so the presets take most from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..constants import CLIP, OFFICIAL_STEPS, SPEEDS

VARIANTS = 3  # guidance variants per guided step: base, reference, reference + audio


@dataclass(frozen=True)
class StageSchedule:
    steps: int  # Euler steps = network calls per clip
    guided: int  # the first `guided` steps use 3-way guidance, the rest one conditional pass

    def evaluations_per_clip_frame(self) -> int:
        return VARIANTS * self.guided + (self.steps - self.guided)


SCHEDULES = {  # (keyframes, interpolation) per name in SPEEDS
    "quality": (StageSchedule(OFFICIAL_STEPS, OFFICIAL_STEPS), StageSchedule(OFFICIAL_STEPS, OFFICIAL_STEPS)),
    "fast": (StageSchedule(OFFICIAL_STEPS, OFFICIAL_STEPS), StageSchedule(5, 2)),
    "fastest": (StageSchedule(5, 2), StageSchedule(3, 1)),
}
assert tuple(SCHEDULES) == SPEEDS


def stage_schedules(speed: str = "quality", steps: int | None = None) -> tuple[StageSchedule, StageSchedule]:
    """(keyframe, interpolation) schedules of a preset; ``steps`` replaces both stages' step counts (the
    guided share is capped at it, so ``quality`` with ``steps`` guides every step, as before presets)."""
    if speed not in SPEEDS:
        raise ValueError(f"unknown speed {speed!r}; choose one of {', '.join(SPEEDS)}")
    schedules = SCHEDULES[speed]
    if steps is None:
        return schedules
    return tuple(StageSchedule(steps, steps if s.guided == s.steps else min(s.guided, steps)) for s in schedules)


def evaluations_per_output_frame(keyframe: StageSchedule, interpolation: StageSchedule, keyframe_slots: int = CLIP) -> float:
    """Network frame-evaluations per output frame in a long video: a keyframe clip of 14 slots (the anchor
    and 13 keyframes) covers 13 x 13 frames, an interpolation clip of 14 frames covers 13."""
    step = CLIP - 1
    return (keyframe_slots * keyframe.evaluations_per_clip_frame() / (step * step)
            + CLIP * interpolation.evaluations_per_clip_frame() / step)
