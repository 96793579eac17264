"""Lip-sync methods as the benchmark sees them.

The protocol is one call: ``method(task) -> MethodOutput``. A ``LipSyncTask`` gives the source video
(an ordinary mp4, H.264 + AAC), the driving audio (a 16 kHz mono wav exactly ``n_frames * 640`` samples
long), and metadata a method may use: the source's ground-truth landmarks (a real method may detect its
own) and, for oracles only, the driving audio's phoneme timings and the source clip's render spec. The
method returns ``n_frames`` RGB frames of the source's size; it may also return the exact landmarks of
its output when it knows them (only the built-in baselines do), which the landmark-only metrics can use.

Built in: ``copy`` returns the source frames unchanged (full leakage, perfect identity) and ``oracle``
re-renders the source clip with the mouth the driving audio asks for (perfect sync, no leakage). Others
are found by name in ``METHODS`` (``register_method``) or given as ``package.module:factory``; a factory
takes keyword options and returns the method. ``keysync`` runs a KeySync model folder (default: the shipped
small model); ``autoencode`` runs the same pipeline with the source's own latents instead of sampled ones,
the ceiling that model's face crop and VAE allow.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ..synth.dataset import ClipRecord
from ..synth.speech import Phoneme


@dataclass(frozen=True)
class LipSyncTask:
    """One benchmark job: make the face in ``source_video`` say ``driving_audio``."""

    source_video: Path
    driving_audio: Path
    n_frames: int
    source_landmarks: np.ndarray  # (T, 68, 2) iBUG pixels, ground truth of the source
    clip: ClipRecord  # the source clip's files and spec
    driving_phonemes: list[Phoneme] = field(default_factory=list)  # ground truth: for oracles only

    def source_frames(self) -> np.ndarray:
        from ..synth.clipio import read_mp4_frames

        return read_mp4_frames(self.source_video)

    def driving_waveform(self) -> np.ndarray:
        from ..synth.clipio import read_wav

        return read_wav(self.driving_audio)


@dataclass
class MethodOutput:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    landmarks: np.ndarray | None = None  # (T, 68, 2) exact landmarks of the output, when known


class LipSyncMethod(Protocol):
    name: str

    def __call__(self, task: LipSyncTask) -> MethodOutput: ...


class CopyMethod:
    """Returns the source video unchanged: the leakiest possible method."""

    name = "copy"

    def __call__(self, task: LipSyncTask) -> MethodOutput:
        return MethodOutput(task.source_frames(), task.source_landmarks)


class OracleMethod:
    """Re-renders the source clip with the mouth the driving audio asks for: the ideal method."""

    name = "oracle"

    def __call__(self, task: LipSyncTask) -> MethodOutput:
        from ..synth.dataset import render_clip
        from ..synth.visemes import mouth_track

        spec = task.clip.spec()
        mouth = mouth_track(task.driving_phonemes, task.n_frames, spec.fps, spec.identity.articulation)
        frames, landmarks, _ = render_clip(spec, mouth)
        return MethodOutput(frames, landmarks)


class KeySyncMethod:
    """KeySync itself: the dub pipeline with a model folder (default: the shipped small model), on the clip's
    own video file."""

    name = "keysync"

    def __init__(self, model: str | None = None, speed: str = "quality", steps: int | None = None, seed: int = 0,
                 guidance: tuple[float, ...] | None = None, deep_cache: int = 1, fp8: str | None = None,
                 dtype: str = "float32"):
        from ..models.model import shipped_model_dir
        from ..models.precision import resolve_dtype
        from ..pipeline.dub import DubOptions, KeySyncPipeline

        self.pipeline = KeySyncPipeline.from_pretrained(model or shipped_model_dir(), dtype=resolve_dtype(dtype))
        if fp8:
            self.pipeline.fp8(fp8)
        self.options = DubOptions(speed=speed, steps=steps, deep_cache=deep_cache, seed=seed, progress=False, guidance=guidance)

    def __call__(self, task: LipSyncTask) -> MethodOutput:
        """The dubbed frames as the pipeline makes them: scored before any video encoding."""
        out = self.pipeline(str(task.source_video), str(task.driving_audio), options=self.options)
        return MethodOutput(np.stack([frame for _, frame in zip(range(task.n_frames), out.frames)]))


class AutoencodeMethod(KeySyncMethod):
    """``keysync`` without diffusion: each face crop goes through the model's VAE and is pasted back. It
    keeps the source's mouth, so only its identity and sharpness scores mean anything: they bound what a
    model with this crop size and VAE can reach (and the mouth reader's sync on such faces)."""

    name = "autoencode"

    def __init__(self, model: str | None = None, seed: int = 0):
        from ..pipeline.sampling import SourceLatents

        super().__init__(model, seed=seed)
        self.pipeline.dubber_class = SourceLatents
        self._last: tuple[tuple, MethodOutput] | None = None

    def __call__(self, task: LipSyncTask) -> MethodOutput:
        """The audio plays no part (the driving audio is as long as the clip in every mode), so a clip's
        output is made once and serves all its modes, which the runner scores one after another."""
        key = (str(task.source_video), task.n_frames)
        if self._last is None or self._last[0] != key:
            self._last = key, super().__call__(task)
        return self._last[1]


METHODS: dict[str, Callable[..., LipSyncMethod]] = {
    "copy": CopyMethod, "oracle": OracleMethod, "keysync": KeySyncMethod, "autoencode": AutoencodeMethod,
}


def register_method(name: str, factory: Callable[..., LipSyncMethod]) -> None:
    """Make ``keysync bench --method NAME`` build its method with ``factory(**options)``."""
    METHODS[name] = factory


def get_method(name: str, **options) -> LipSyncMethod:
    """A registered method by name, or ``package.module:factory``."""
    from ..errors import KeySyncError

    if name in METHODS:
        return METHODS[name](**options)
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)(**options)
        except (ImportError, AttributeError) as err:
            raise KeySyncError(f"cannot load method {name!r} ({err}); give package.module:factory") from None
    raise KeySyncError(f"unknown method {name!r}; choose one of {', '.join(sorted(METHODS))} or give package.module:factory")
