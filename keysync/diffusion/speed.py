"""Speed presets: how many network evaluations each sampling stage spends.

A stage's schedule is its number of Euler steps (network calls per clip) and how many of the first steps
run the three guidance variants; the later steps run one conditional pass (audio and reference), a
guidance interval in the sense of Kynkaenniemi et al. (2024): at low noise the guided and conditional
estimates nearly agree, so guidance there costs three evaluations for little. The interpolation stage
does ~93 % of the work at the official schedule (13 output frames per 14-frame clip, against 169 per
keyframe clip), so the presets take most from it.

``deep_cache`` N > 1 (DeepCache, Ma et al. 2024) computes the UNet's deep levels on one step in N and reuses
their output on the steps between, which run only the full-resolution level (its input block and the last
output block): 37 % of a network evaluation's FLOPs at official size, 22 % for the small model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..constants import CLIP, OFFICIAL_STEPS, SPEEDS

VARIANTS = 3  # guidance variants per guided step: base, reference, reference + audio


@dataclass(frozen=True)
class StageSchedule:
    steps: int  # Euler steps = network calls per clip
    guided: int  # the first `guided` steps use 3-way guidance, the rest one conditional pass
    deep_cache: int = 1  # the deep levels run on one step in this many, the steps between reuse them (1: every step)

    def evaluations_per_clip_frame(self, whole_only: bool = False) -> int:
        """Network evaluations per clip frame; ``whole_only``: only those that run the deep levels too."""
        whole = self.deep_steps() if whole_only else [True] * self.steps
        return sum((VARIANTS if i < self.guided else 1) for i, fresh in enumerate(whole) if fresh)

    def deep_steps(self) -> list[bool]:
        """Per step: True where the whole network runs (and its deep features are kept), False where the
        last kept ones are reused. Every ``deep_cache``-th step runs whole, and so does the first step
        without guidance, as the kept features are of the three guidance variants."""
        whole, last = [], 0
        for i in range(self.steps):
            fresh = i == 0 or i - last >= self.deep_cache or (i < self.guided) != (last < self.guided)
            last = i if fresh else last
            whole.append(fresh)
        return whole


SCHEDULES = {  # (keyframes, interpolation) per name in SPEEDS
    "quality": (StageSchedule(OFFICIAL_STEPS, OFFICIAL_STEPS), StageSchedule(OFFICIAL_STEPS, OFFICIAL_STEPS)),
    "fast": (StageSchedule(OFFICIAL_STEPS, OFFICIAL_STEPS), StageSchedule(4, 3)),
    "fastest": (StageSchedule(5, 2), StageSchedule(3, 1)),
}
assert tuple(SCHEDULES) == SPEEDS


def stage_schedules(speed: str = "quality", steps: int | None = None, deep_cache: int = 1) -> tuple[StageSchedule, StageSchedule]:
    """(keyframe, interpolation) schedules of a preset; ``steps`` replaces both stages' step counts (the
    guided share is capped at it, so ``quality`` with ``steps`` guides every step, as before presets);
    ``deep_cache`` as ``StageSchedule``'s, for both stages."""
    if speed not in SPEEDS:
        raise ValueError(f"unknown speed {speed!r}; choose one of {', '.join(SPEEDS)}")
    if deep_cache < 1:
        raise ValueError(f"deep_cache {deep_cache}: 1 runs the whole network on every step, N > 1 on one step in N")
    schedules = SCHEDULES[speed]
    if steps is not None:
        schedules = tuple(StageSchedule(steps, steps if s.guided == s.steps else min(s.guided, steps)) for s in schedules)
    return tuple(replace(s, deep_cache=deep_cache) for s in schedules)


def evaluations_per_output_frame(keyframe: StageSchedule, interpolation: StageSchedule, keyframe_slots: int = CLIP,
                                 whole_only: bool = False) -> float:
    """Network frame-evaluations per output frame in a long video: a keyframe clip of 14 slots (the anchor
    and 13 keyframes) covers 13 x 13 frames, an interpolation clip of 14 frames covers 13. ``whole_only``:
    only the evaluations that run the deep levels too (``StageSchedule.deep_cache``)."""
    step = CLIP - 1
    return (keyframe_slots * keyframe.evaluations_per_clip_frame(whole_only) / (step * step)
            + CLIP * interpolation.evaluations_per_clip_frame(whole_only) / step)
