"""The page's bundled example, made with the synthetic world (nothing to download): two held-out speakers
side by side, so that choosing the face matters, and a third one's speech to dub them with."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..constants import SAMPLES_PER_FRAME


def make_example(folder: Path, seconds: float | None = None, size: int = 192, seed: int = 0) -> tuple[Path, Path]:
    """Write ``two-speakers.mp4`` (two test-split faces side by side, the left one's own audio) and
    ``speech.wav`` (another test-split speaker's sentence) into ``folder``; ``seconds`` cuts both short."""
    from ..synth.clipio import write_mp4, write_wav
    from ..synth.dataset import clip_audio, make_clip, plan_dataset

    specs = plan_dataset(3, seed, size, size, clips_per_identity=1, occluder_rate=0.0, sound_mix=(1.0, 0.0, 0.0, 0.0), only_split="test")
    left, right = (make_clip(spec) for spec in specs[:2])
    frames = min(len(left.frames), len(right.frames))
    if seconds is not None:
        frames = min(frames, round(seconds * left.spec.fps))
    speech = clip_audio(specs[2])[0]
    if seconds is not None:
        speech = speech[: round(seconds * left.spec.fps) * SAMPLES_PER_FRAME]
    folder = Path(folder)
    video, wav = folder / "two-speakers.mp4", folder / "speech.wav"
    write_mp4(video, np.concatenate([left.frames[:frames], right.frames[:frames]], axis=2), left.audio[: frames * SAMPLES_PER_FRAME], left.spec.fps)
    write_wav(wav, speech)
    return video, wav
