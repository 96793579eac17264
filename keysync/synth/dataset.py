"""Clips and datasets of the synthetic world: a clip is a spec (JSON) plus the files rendered from it.

A ``ClipSpec`` holds everything needed to render a clip again exactly: identity, scene, head-motion seed,
occluder and the sound (sentence, voice, rate, pitch, or a non-speech kind). ``make_clip`` turns it into
frames, audio and ground truth; ``write_clip`` stores ``NAME.mp4`` (H.264 + AAC), ``NAME.wav`` (16 kHz),
``NAME.npz`` (``mouth`` (T, 5), ``landmarks`` (T, 68, 2) iBUG pixels, ``occluder`` (T, H, W) uint8 with
1 = occluder pixel) and ``NAME.json`` (the spec and the phoneme timings).

A dataset folder has ``train/``, ``val/`` and ``test/`` and a ``manifest.json``. Splits share no identity
and no sentence: each split draws identities from its own random stream, and every sentence is used by one
split only. A larger world with the same seed holds the smaller one clip for clip (each split's first clips
are the smaller world's), so growing the train split never brings in a smaller world's test sentences.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .render import FaceRenderer, Identity, Motion, Occluder, Scene
from .speech import SAMPLE_RATE, Phoneme, noise, room_tone, synthesize, tones
from .visemes import FPS, mouth_track, shift_phonemes

SPLITS = ("train", "val", "test")
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
FORMAT_VERSION = 1

_SUBJECTS = [
    "the old man", "my sister", "a small dog", "the teacher", "our neighbour", "the baker", "a young girl",
    "the pilot", "his brother", "the farmer", "a tired nurse", "the captain", "my uncle", "the singer",
    "a quiet boy", "the doctor", "her friend", "the driver", "a clever cat", "the painter",
]
_VERBS = [
    "found", "painted", "carried", "opened", "watched", "bought", "cleaned", "moved", "borrowed", "fixed",
    "dropped", "followed", "measured", "pushed", "wrapped", "counted", "lifted", "checked", "shared", "sold",
]
_OBJECTS = [
    "a blue box", "the heavy door", "some fresh bread", "an empty bottle", "the wooden chair", "a paper map",
    "the red bicycle", "a broken watch", "the morning paper", "a bag of apples", "the silver key",
    "a pair of shoes", "the big window", "a warm blanket", "the garden gate", "a cup of tea",
]
_ENDINGS = [
    "near the river", "before lunch", "in the kitchen", "after the storm", "at the station", "on Monday",
    "behind the house", "without a word", "for the party", "by the old bridge", "during the game",
    "under the table", "in the morning", "at the market", "with great care", "late at night",
]


def sentence_pool(seed: int, count: int) -> list[str]:
    """``count`` distinct sentences, shuffled deterministically by ``seed``."""
    rng = np.random.default_rng([seed, 7])
    seen: dict[str, None] = {}
    while len(seen) < count:
        s = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_ENDINGS)}."
        seen[s[0].upper() + s[1:]] = None
    return list(seen)


@dataclass
class ClipSpec:
    """Everything that determines a clip."""

    name: str
    split: str
    identity_id: str
    identity: Identity
    scene: Scene
    motion_seed: int
    sound: str  # "speech", "silence", "noise" or "tones"
    sentence: str | None
    rate: int  # espeak words per minute
    pitch: int
    sound_seed: int
    lead: float  # seconds of quiet before the sound
    tail: float  # seconds of quiet after it
    duration: float | None  # total length for non-speech clips (speech clips: lead + speech + tail)
    occluder: Occluder | None
    width: int
    height: int
    fps: int = FPS

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> ClipSpec:
        d = dict(d)
        d["identity"] = Identity(**d["identity"])
        d["scene"] = Scene(**d["scene"])
        d["occluder"] = Occluder(**d["occluder"]) if d["occluder"] else None
        return cls(**d)


@dataclass
class Clip:
    """A rendered clip and its ground truth."""

    spec: ClipSpec
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    audio: np.ndarray  # (T * 640,) float32, 16 kHz
    phonemes: list[Phoneme]  # clip time
    mouth: np.ndarray  # (T, 5)
    landmarks: np.ndarray  # (T, 68, 2) pixels
    occluder: np.ndarray  # (T, H, W) uint8, 1 = occluder
    extra: dict = field(default_factory=dict)


def clip_audio(spec: ClipSpec) -> tuple[np.ndarray, list[Phoneme], int]:
    """The clip's 16 kHz audio (a whole number of frames long), its phonemes in clip time, and its frame count."""
    rng = np.random.default_rng(spec.sound_seed)
    if spec.sound == "speech":
        speech = synthesize(spec.sentence, spec.identity.voice, spec.rate, spec.pitch)
        body, phonemes = speech.waveform * rng.uniform(0.6, 1.0), shift_phonemes(speech.phonemes, spec.lead)
        total = spec.lead + speech.duration + spec.tail
    else:
        total = spec.duration
        body_len = total - spec.lead - spec.tail
        body = {"silence": lambda d, r: np.zeros(int(d * SAMPLE_RATE), np.float32), "noise": noise, "tones": tones}[spec.sound](
            body_len, rng
        )
        phonemes = []
    n_frames = max(1, int(np.ceil(total * spec.fps)))
    audio = room_tone(n_frames * SAMPLES_PER_FRAME, rng)
    start = int(round(spec.lead * SAMPLE_RATE))
    body = body[: len(audio) - start]
    audio[start : start + len(body)] += body
    return audio.astype(np.float32), phonemes, n_frames


def render_clip(spec: ClipSpec, mouth: np.ndarray, progress=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames, landmarks and occluder masks for a spec with the given mouth track (one row per frame)."""
    renderer = FaceRenderer(spec.identity, spec.scene, spec.width, spec.height)
    poses = Motion(spec.motion_seed).poses(len(mouth), spec.fps)
    frames = np.empty((len(mouth), spec.height, spec.width, 3), np.uint8)
    landmarks = np.empty((len(mouth), 68, 2), np.float32)
    masks = np.empty((len(mouth), spec.height, spec.width), np.uint8)
    for i, (pose, m) in enumerate(zip(poses, mouth)):
        frames[i], landmarks[i], masks[i] = renderer.render(pose, m, spec.occluder, i / spec.fps)
        if progress is not None:
            progress()
    return frames, landmarks, masks


def make_clip(spec: ClipSpec) -> Clip:
    audio, phonemes, n_frames = clip_audio(spec)
    mouth = mouth_track(phonemes, n_frames, spec.fps, spec.identity.articulation)
    frames, landmarks, masks = render_clip(spec, mouth)
    return Clip(spec, frames, audio, phonemes, mouth, landmarks, masks)


def write_clip(clip: Clip, folder: Path) -> None:
    from .clipio import write_mp4, write_npz, write_text, write_wav

    base = Path(folder) / clip.spec.name
    write_mp4(base.with_suffix(".mp4"), clip.frames, clip.audio, clip.spec.fps)
    write_wav(base.with_suffix(".wav"), clip.audio)
    write_npz(base.with_suffix(".npz"), mouth=clip.mouth, landmarks=clip.landmarks, occluder=clip.occluder)
    meta = {
        "format_version": FORMAT_VERSION,
        "spec": clip.spec.to_json(),
        "frames": len(clip.frames),
        "phonemes": [[p.symbol, round(p.start, 6), round(p.end, 6)] for p in clip.phonemes],
    }
    write_text(base.with_suffix(".json"), json.dumps(meta, indent=1) + "\n")


@dataclass
class ClipRecord:
    """A clip on disk: its files and its ground truth, loaded lazily."""

    folder: Path
    name: str

    @property
    def video(self) -> Path:
        return self.folder / f"{self.name}.mp4"

    @property
    def wav(self) -> Path:
        return self.folder / f"{self.name}.wav"

    def meta(self) -> dict:
        return json.loads((self.folder / f"{self.name}.json").read_text())

    def spec(self) -> ClipSpec:
        return ClipSpec.from_json(self.meta()["spec"])

    def phonemes(self) -> list[Phoneme]:
        return [Phoneme(s, a, b) for s, a, b in self.meta()["phonemes"]]

    def truth(self) -> dict[str, np.ndarray]:
        with np.load(self.folder / f"{self.name}.npz") as z:
            return {k: z[k] for k in z.files}


def plan_dataset(
    n_clips: int,
    seed: int,
    width: int = 256,
    height: int = 256,
    clips_per_identity: int = 4,
    occluder_rate: float = 0.25,
    sound_mix: tuple[float, float, float, float] = (0.82, 0.06, 0.06, 0.06),
    splits: tuple[float, float, float] = (0.8, 0.1, 0.1),
    only_split: str | None = None,
    jaw_drop: float = 0.22,
) -> list[ClipSpec]:
    """Specs for ``n_clips`` clips split train/val/test, disjoint by identity and sentence.

    ``sound_mix``: shares of speech, silence, noise and tones. ``only_split`` makes every clip one split
    (the benchmark's test set), drawing from that split's own identity and sentence streams. ``jaw_drop``
    sets every face's chin travel (``Identity.jaw_drop``) without touching any random stream, so a world
    with a larger jaw swing holds the same people, sentences and scenes.
    """
    if n_clips < 1:
        raise ValueError("n_clips must be at least 1")
    if only_split:
        counts = {s: (n_clips if s == only_split else 0) for s in SPLITS}
    else:
        n_test = max(1, int(round(n_clips * splits[2]))) if n_clips >= 3 else 0
        n_val = max(1, int(round(n_clips * splits[1]))) if n_clips >= 3 else 0
        counts = {"train": n_clips - n_test - n_val, "val": n_val, "test": n_test}
    pool = sentence_pool(seed, 3 * n_clips + 30)
    # every sentence belongs to one split: test takes from the front, val the middle, train the rest
    split_sentences = {"test": pool[0::3], "val": pool[1::3], "train": pool[2::3]}
    specs = []
    for split_no, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, split_no])
        sentences = iter(split_sentences[split])
        identities: list[tuple[str, Identity]] = []
        for k in range(counts[split]):
            if k % clips_per_identity == 0:
                id_rng = np.random.default_rng([seed, split_no, 1, k // clips_per_identity])
                identity = replace(Identity.sample(id_rng), jaw_drop=jaw_drop)
                identities.append((f"{split}-{k // clips_per_identity:04d}", identity))
            identity_id, identity = identities[-1]
            sound = str(rng.choice(["speech", "silence", "noise", "tones"], p=sound_mix))
            duration = None if sound == "speech" else float(rng.uniform(2.0, 3.5))
            occluder = None
            if rng.uniform() < occluder_rate:
                occluder = Occluder.sample(rng, duration or 2.5, identity.skin)
            specs.append(
                ClipSpec(
                    name=f"{split}_{k:05d}",
                    split=split,
                    identity_id=identity_id,
                    identity=identity,
                    scene=Scene.sample(rng),
                    motion_seed=int(rng.integers(2**31)),
                    sound=sound,
                    sentence=next(sentences) if sound == "speech" else None,
                    rate=int(rng.integers(140, 200)),
                    pitch=int(rng.integers(30, 70)),
                    sound_seed=int(rng.integers(2**31)),
                    lead=float(rng.uniform(0.08, 0.2)),
                    tail=float(rng.uniform(0.08, 0.2)),
                    duration=duration,
                    occluder=occluder,
                    width=width,
                    height=height,
                )
            )
    return specs


def _render_and_write(job: tuple[ClipSpec, Path]) -> None:
    spec, folder = job
    write_clip(make_clip(spec), folder / spec.split)


def write_dataset(
    out_dir: Path, specs: list[ClipSpec], seed: int, overwrite: bool = False, progress: bool = True, jobs: int = 1
) -> Path:
    """Render and write every clip into ``out_dir`` (built in a temporary folder, moved into place at the end).

    ``jobs`` > 1 renders clips in that many processes; each clip depends only on its spec, so the files are
    the same."""
    import shutil

    from ..errors import KeySyncError
    from ..files import replace_folder, temp_folder
    from ..parallel import run_jobs

    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise KeySyncError(f"{out_dir} already exists; choose another folder or pass --overwrite")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_folder(out_dir)
    try:
        for split in SPLITS:
            (tmp / split).mkdir()
        run_jobs(_render_and_write, [(spec, tmp) for spec in specs], jobs, desc="rendering clips", unit="clip", progress=progress)
        manifest = {
            "format_version": FORMAT_VERSION,
            "seed": seed,
            "fps": FPS,
            "sample_rate": SAMPLE_RATE,
            "clips": [
                {"name": s.name, "split": s.split, "identity": s.identity_id, "sound": s.sound, "sentence": s.sentence}
                for s in specs
            ],
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        replace_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def load_split(data_dir: Path, split: str) -> list[ClipRecord]:
    """The clips of one split of a dataset folder, in name order."""
    from ..errors import KeySyncError

    folder = Path(data_dir) / split
    if not (Path(data_dir) / "manifest.json").is_file():
        raise KeySyncError(f"{data_dir} is not a synthetic dataset (no manifest.json); make one with `keysync synth`")
    return [ClipRecord(folder, p.stem) for p in sorted(folder.glob("*.json"))]
