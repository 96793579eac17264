"""The synthetic talking-head world: speech with exact phoneme timings, mouths that follow it, and
procedurally rendered faces with full ground truth.

Public API (used by training and by ``keysync bench``):

- ``plan_dataset(n_clips, seed, width, height)`` -> list of ``ClipSpec`` split train/val/test, disjoint by
  identity and sentence; ``write_dataset(out_dir, specs, seed)`` renders and writes them.
- ``make_clip(spec)`` -> ``Clip`` (frames, 16 kHz audio, phonemes, mouth (T, 5), landmarks (T, 68, 2),
  occluder masks); ``write_clip(clip, folder)``.
- ``render_clip(spec, mouth)`` -> frames, landmarks, occluder masks for any mouth track (the oracle).
- ``load_split(data_dir, split)`` -> ``ClipRecord`` list (``.video``, ``.wav``, ``.truth()``, ``.spec()``,
  ``.phonemes()``).
- ``synthesize(text, voice, rate, pitch)`` -> ``Speech`` (16 kHz waveform + ``Phoneme`` timings).
- ``mouth_track(phonemes, n_frames, fps, articulation)`` -> mouth parameters (T, 5) in ``MOUTH_PARAMS``
  order: jaw, width, round, teeth, tongue.

Conventions: 25 fps, 16 kHz, 640 samples per frame; landmarks iBUG 68 (0-based, pixel coordinates);
occluder masks 1 = occluder pixel.
"""

import importlib

# Imported on first use, so that ``keysync --help`` (which imports ``keysync.synth.commands``) stays fast.
_EXPORTS = {
    **dict.fromkeys(
        ["SPLITS", "Clip", "ClipRecord", "ClipSpec", "clip_audio", "load_split", "make_clip", "plan_dataset", "render_clip", "write_clip", "write_dataset"],
        ".dataset",
    ),
    **dict.fromkeys(["FaceRenderer", "Identity", "Motion", "Occluder", "Pose", "Scene"], ".render"),
    **dict.fromkeys(["SAMPLE_RATE", "Phoneme", "Speech", "synthesize"], ".speech"),
    **dict.fromkeys(["FPS", "MOUTH_PARAMS", "REST", "mouth_track"], ".visemes"),
}

__all__ = [
    "FPS",
    "MOUTH_PARAMS",
    "REST",
    "SAMPLE_RATE",
    "SPLITS",
    "Clip",
    "ClipRecord",
    "ClipSpec",
    "FaceRenderer",
    "Identity",
    "Motion",
    "Occluder",
    "Phoneme",
    "Pose",
    "Scene",
    "Speech",
    "clip_audio",
    "load_split",
    "make_clip",
    "mouth_track",
    "plan_dataset",
    "render_clip",
    "synthesize",
    "write_clip",
    "write_dataset",
]


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
