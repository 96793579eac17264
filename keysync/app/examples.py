"""The page's bundled example, made with the synthetic world (nothing to download): two held-out speakers
side by side, so that choosing the face matters, and a third one's speech to dub them with."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..constants import SAMPLES_PER_FRAME


def make_example(folder: Path, seconds: float | None = None, size: int = 192, seed: int = 0) -> tuple[Path, Path]:
    """Write ``two-speakers.mp4`` (two test-split faces side by side, the left one's own audio) and
    ``speech.wav`` (another test-split speaker's sentence) into ``folder``; ``seconds`` cuts both short
    (only the frames kept are rendered)."""
    from ..synth.clipio import write_mp4, write_wav
    from ..synth.dataset import clip_audio, plan_dataset, render_clip
    from ..synth.visemes import mouth_track

    specs = plan_dataset(3, seed, size, size, clips_per_identity=1, occluder_rate=0.0, sound_mix=(1.0, 0.0, 0.0, 0.0), only_split="test")
    sounds = [clip_audio(spec) for spec in specs]  # (audio, phonemes, frames)
    fps = specs[0].fps
    frames = min(sounds[0][2], sounds[1][2], round(seconds * fps) if seconds is not None else np.inf)
    faces = [render_clip(spec, mouth_track(phonemes, n, fps, spec.identity.articulation)[:frames])[0]
             for spec, (_, phonemes, n) in zip(specs[:2], sounds[:2])]
    speech = sounds[2][0] if seconds is None else sounds[2][0][: round(seconds * fps) * SAMPLES_PER_FRAME]
    folder = Path(folder)
    video, wav = folder / "two-speakers.mp4", folder / "speech.wav"
    write_mp4(video, np.concatenate(faces, axis=2), sounds[0][0][: frames * SAMPLES_PER_FRAME], fps)
    write_wav(wav, speech)
    return video, wav
