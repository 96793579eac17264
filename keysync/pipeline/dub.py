"""Dubbing end to end: a video and a speech track in, the same video with the lower face re-spoken out.

``KeySyncPipeline(frames, audio, fps=...)`` works on frames and a waveform held in memory and returns the
dubbed frames as an iterator; ``dub_file`` reads and writes files with the same code.

Passes over the input (memory stays flat, whatever the length, when the input is a file):
1. track: decode every frame once, track the target face, plan stabilised crops (landmarks only kept);
2. generate + write, window by window: a crop reader decodes ahead to cut the 25 fps model frames'
   face crops, which are VAE-encoded, sampled (keyframes, then interpolation) and VAE-decoded; a second reader
   decodes the frames to write, pastes the generated lower face back through a feathered mask (by
   default only above a line under the jaw: ``keysync.faces.paste``), and encodes them with the new
   audio. Frames without the target face are written unchanged.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections import deque
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..audio import SAMPLES_PER_FRAME, build_features, frame_windows
from ..diffusion import stage_guidance
from ..constants import SPEEDS
from ..diffusion.speed import stage_schedules
from ..errors import KeySyncError
from ..faces.backends import load_backend
from ..faces.crops import cut_crop
from ..faces.frontend import FaceLocation, locate_face
from ..faces.masks import build_mask, latent_mask
from ..faces.paste import PASTE_REGIONS, above_line, jaw_limits, paste_back
from ..faces.tracking import TargetFace
from ..media.audio import SAMPLE_RATE, fit_audio_to_frames, load_audio, resample_to_16k
from ..media.frames import MODEL_FPS, plan_model_frames
from ..media.source import VideoSource, frame_source
from ..media.writer import VideoWriter, check_output_path
from ..models import KeySyncModel
from ..models.download import resolve_model
from ..parallel import in_background
from .plan import CLIP, LONG_AUDIO, SHORT_AUDIO, check_deep_cache, check_steps, first_window_keyframes, plan_frames
from .sampling import FrameData, LatentDubber, SamplingOptions, decode_groups

log = logging.getLogger(__name__)


@dataclass
class DubOptions:
    speed: str = "quality"  # SPEEDS: quality is the official schedule; fast and fastest spend fewer network evaluations
    steps: int | None = None  # network calls per clip per stage, replacing the speed preset's (11 in quality)
    deep_cache: int = 1  # N > 1: the networks' deep levels run on one step in N, the others reuse them (DeepCache)
    guidance: tuple[float, ...] | None = None  # (audio, reference), or keyframe's then interpolation's; None: the model folder's, else (5, 2)
    seed: int = 0
    clips_per_call: int = 2
    batches_per_window: int = 1
    decode_frames: int = 14
    mask: str | None = None  # None: the mask the model was trained with (box, the paper's, unless it says otherwise)
    face_index: int | None = None
    ref_frame: int | None = None  # a source frame index; None = chosen automatically
    occluders: str | None = None  # .npy of (frames, H, W) masks in frame pixels, 1 = occluder in front of the face
    long_audio: str = "trim"
    short_audio: str = "pad"
    backend: str = "mediapipe"
    feather: tuple[float, float] = (0.02, 0.02)  # (dilate, blur) as fractions of the crop
    paste: str = "jaw"  # PASTE_REGIONS: the regenerated region above a line under the jaw, or all of it ("mask")
    color_match: bool = False
    crf: int = 17  # x264 quality of dub_file's output (with the writer's veryfast preset)
    encoder: str = "auto"  # ENCODERS: dub_file's H.264 encoder; auto takes h264_nvenc where it opens, else libx264
    progress: bool = True


STAGES = ("tracking", "encode", "sampling", "decode", "paste")  # DubOutput.timings' keys


@dataclass
class DubOutput:
    """What a dub gives back. ``frames`` yields the dubbed RGB frames (H, W, 3) uint8 one by one, made as
    it is iterated (memory does not grow with the video's length); ``timings`` fills in as it goes."""

    frames: Iterator[np.ndarray]
    times: np.ndarray  # seconds, one per output frame
    audio: np.ndarray  # the new soundtrack, 16 kHz mono float32, sample 0 at time 0
    target: TargetFace  # the dubbed face's track
    timings: dict[str, float]  # seconds spent per stage (STAGES)
    size: tuple[int, int]  # (width, height)
    rate: Fraction  # the input's frame rate
    location: FaceLocation  # the track and crop boxes (``save_location`` hands them to another process)
    window_starts: np.ndarray  # the first output frame of each sampling window (where a video may be split seamlessly)


@dataclass
class Timeline:
    """How output frames map onto model frames and source frames."""

    num_model_frames: int  # L
    model_source: np.ndarray  # (L,) source frame shown at model frame k
    output_source: np.ndarray  # (M,) source frame of output frame j
    output_model: np.ndarray  # (M,) model frame pasted onto output frame j
    output_times: np.ndarray  # (M,) seconds


LENGTH_SLACK = 2  # model frames (80 ms) by which speech and video may differ unremarked: encoders round lengths


def length_note(video_frames: int, audio_frames: int, long_audio: str, short_audio: str) -> str | None:
    """One line saying what the length policy does to speech and video of different lengths, or None."""
    if abs(audio_frames - video_frames) <= LENGTH_SLACK:
        return None
    speech, video, extra = audio_frames / MODEL_FPS, video_frames / MODEL_FPS, abs(audio_frames - video_frames) / MODEL_FPS
    lengths = f"the speech is {speech:.2f} s and the video {video:.2f} s"
    if audio_frames > video_frames:
        return {
            "trim": f"{lengths}: the last {extra:.2f} s of speech are dropped (--long-audio hold or pingpong keeps them)",
            "hold": f"{lengths}: the video's last frame is held for the last {extra:.2f} s (--long-audio)",
            "pingpong": f"{lengths}: the video plays back and forth for the last {extra:.2f} s (--long-audio)",
        }[long_audio]
    return {
        "pad": f"{lengths}: the last {extra:.2f} s of video are dubbed with silence (--short-audio trim cuts them)",
        "trim": f"{lengths}: the last {extra:.2f} s of video are cut (--short-audio pad keeps them, dubbed with silence)",
    }[short_audio]


def make_timeline(times: np.ndarray, rate: float, audio_frames: int, long_audio: str, short_audio: str) -> Timeline:
    """Apply the length policies. ``times``: source frame timestamps; ``audio_frames``: 25 fps frames of audio."""
    plan = plan_model_frames(times)
    video_frames = plan.num_model_frames
    note = length_note(video_frames, audio_frames, long_audio, short_audio)
    if note:
        log.warning(note)
    if audio_frames >= video_frames:
        length = video_frames if long_audio == "trim" else audio_frames
    else:
        length = video_frames if short_audio == "pad" else audio_frames
    k = np.arange(length)
    if long_audio == "pingpong" and video_frames > 1:  # 0 1 .. V-1 V-2 .. 1 0 1 ..
        period = 2 * video_frames - 2
        k = k % period
        k = np.where(k < video_frames, k, period - k)
    model_source = plan.source_index[np.minimum(k, video_frames - 1)]
    if long_audio == "hold":
        model_source[video_frames:] = len(times) - 1  # the very last picture, not the last 25 fps tick's
    keep = plan.model_index < length
    out_source = np.flatnonzero(keep)
    out_model = plan.model_index[keep]
    out_times = np.asarray(times, dtype=np.float64)[keep]
    if length > video_frames:  # extra output frames at the input's rate show the policy's source frames
        step = 1.0 / float(rate)
        end = plan.start + length / plan.fps
        extra = np.arange(out_times[-1] + step, end - 1e-9, step)
        model = np.clip(np.floor((extra - plan.start) * plan.fps + 0.5), 0, length - 1).astype(np.int64)
        out_times = np.concatenate([out_times, extra])
        out_source = np.concatenate([out_source, model_source[model]])
        out_model = np.concatenate([out_model, model])
    return Timeline(length, model_source.astype(np.int64), out_source.astype(np.int64), out_model, out_times)


def reference_score(landmarks: np.ndarray) -> np.ndarray:
    """Per frame of (n, 68, 2) landmarks, how far the face is from a good reference (lower is better):
    its nose off the eyes' centre, plus twice its mouth's opening, both in eye distances."""
    eyes_l, eyes_r = landmarks[:, 36:42].mean(1), landmarks[:, 42:48].mean(1)
    iod = np.linalg.norm(eyes_r - eyes_l, axis=1) + 1e-6
    frontal = np.abs(landmarks[:, 30, 0] - (eyes_l[:, 0] + eyes_r[:, 0]) / 2) / iod
    mouth_open = np.linalg.norm(landmarks[:, 66] - landmarks[:, 62], axis=1) / iod
    return frontal + 2.0 * mouth_open


def choose_reference(target: TargetFace, candidates: np.ndarray) -> int:
    """A source frame for the identity: frontal (nose centred between the eyes) with the mouth closed."""
    return int(candidates[np.argmin(reference_score(target.landmarks[candidates]))])


class ReferenceImages:
    """Keeps, as the tracker goes, the ``PER_TRACK`` frames of each face track that score best as the
    reference (``reference_score`` of its raw landmarks; ``choose_reference`` scores the smoothed ones of
    the chosen face, which ranked its pick 0-4th on the clips tried), and the frame ``wanted`` (a given
    reference). The reference is chosen once tracking ends, and the keyframe stage cannot start without it:
    kept, it needs no seek and decode from the keyframe before it (up to a whole group of pictures, 250
    frames with x264's defaults). A frame not kept is decoded as before: the pixels are the same either
    way. At most ``MEMORY`` bytes: past it the worst-scoring frame goes."""

    PER_TRACK = 6
    MEMORY = 256 * 2**20

    def __init__(self, wanted: int | None = None):
        self.wanted = wanted
        self.images: dict[int, np.ndarray] = {}
        self._best: dict[int, list[tuple[float, int]]] = {}  # per track (by id): (score, frame), best first

    def observe(self, frame, tracks) -> None:
        """``track_faces``' ``observe``: score each track's landmarks on ``frame``. Where no track ranks the
        frame, the one entry each list dropped was this frame's, so nothing else changes."""
        ranked = False
        for track in tracks:
            best = self._best.setdefault(id(track), [])
            best.append((float(reference_score(track.landmarks[-1][None])[0]), frame.index))
            best.sort()
            del best[self.PER_TRACK :]
            ranked = ranked or any(i == frame.index for _, i in best)
        if ranked or frame.index == self.wanted:
            self.images[frame.index] = frame.image
            self._forget()

    def _forget(self) -> None:
        """Drop the images no track ranks any more, then the worst-scoring ones while over ``MEMORY``."""
        ranked = sorted((s, i) for best in self._best.values() for s, i in best)
        keep = {i for _, i in ranked} | {self.wanted}
        self.images = {i: image for i, image in self.images.items() if i in keep}
        while sum(image.nbytes for image in self.images.values()) > self.MEMORY and ranked:
            _, worst = ranked.pop()
            if worst != self.wanted:
                self.images.pop(worst, None)
                for best in self._best.values():
                    best[:] = [(s, i) for s, i in best if i != worst]


class FirstKeyframeImages:
    """Keeps, as the tracker reads the video, the frames that the first window's keyframes show, so that its
    keyframe stage starts as soon as tracking ends, while the window's other frames are decoded again for
    the interpolation stage (which needs all of them; the keyframes alone would wait for a decode up to
    the window's last keyframe, 6 s of video). Model frame k shows the last frame at or before
    ``start + k / MODEL_FPS`` (``plan_model_frames``): once the next frame's time is known, a frame is
    known to be shown or not. At most ``MEMORY`` bytes of frames are kept, else none."""

    MEMORY = 512 * 2**20

    def __init__(self, frames: Iterator, model_frames: list[int]):
        self._frames, self._model_frames = frames, model_frames
        self.images: dict[int, np.ndarray] = {}
        self.complete = True  # False when the frames would have taken more than MEMORY

    def __iter__(self) -> Iterator:
        ticks, times, eps = list(self._model_frames), [], 1e-6
        last = deque(maxlen=3)  # the frames the ticks after the last frame's time may show
        for frame in self._frames:
            while last and ticks and times[0] + ticks[0] / MODEL_FPS + eps < frame.time:
                self._keep(last[-1])  # the last frame at or before the tick
                ticks.pop(0)
            times.append(frame.time)
            last.append(frame)
            yield frame
        if ticks and times:  # at or after the last frame: the video's length decides (model frames past it show its last)
            plan = plan_model_frames(times)
            for tick in ticks:
                source = int(plan.source_index[min(tick, plan.num_model_frames - 1)])
                kept = [frame for frame in last if frame.index == source]
                if not kept:
                    self.images, self.complete = {}, False
                    return
                self._keep(kept[0])

    def _keep(self, frame) -> None:
        if self.complete and frame.index not in self.images:
            self.images[frame.index] = frame.image
            if sum(image.nbytes for image in self.images.values()) > self.MEMORY:
                self.images, self.complete = {}, False

    def get(self, sources: list[int]) -> dict[int, np.ndarray] | None:
        """The images of ``sources``, or None when one of them was not kept."""
        return {i: self.images[i] for i in sources} if self.complete and all(i in self.images for i in sources) else None


def _covers_face(occluder: np.ndarray, landmarks: np.ndarray) -> bool:
    x0, y0 = np.floor(landmarks.min(axis=0)).astype(int)
    x1, y1 = np.ceil(landmarks.max(axis=0)).astype(int)
    region = np.asarray(occluder[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)])
    return region.size > 0 and float((region > 0.5).mean()) > 0.01


def load_occluders(path: str, frames: int, info) -> np.ndarray:
    """Per-frame occluder masks from a .npy file, memory-mapped (shape (frames, height, width))."""
    try:
        masks = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise KeySyncError(f"cannot read occluder masks {path}: {err}; give a .npy array of shape (frames, height, width)") from err
    if masks.ndim != 3 or masks.shape[0] < frames or masks.shape[1:] != (info.height, info.width):
        raise KeySyncError(
            f"occluder masks {path} have shape {masks.shape}; expected ({frames}, {info.height}, {info.width}), one mask per video frame"
        )
    return masks


def sampling_options(model: KeySyncModel, opts: DubOptions) -> SamplingOptions:
    """``opts``' speed preset, steps, guidance (else the model folder's), batching and seed, for the sampler."""
    try:
        keyframe_guidance, interpolation_guidance = stage_guidance(opts.guidance or model.info.get("guidance", (5.0, 2.0)))
    except (TypeError, ValueError) as err:
        raise KeySyncError(f"bad guidance scales ({err}); pass --guidance A,R or fix the model folder's keysync.json") from None
    keyframe_schedule, interpolation_schedule = stage_schedules(opts.speed, opts.steps, opts.deep_cache)
    return SamplingOptions(keyframe_schedule=keyframe_schedule, interpolation_schedule=interpolation_schedule, guidance=keyframe_guidance,
                           interpolation_guidance=interpolation_guidance, clips_per_call=opts.clips_per_call, seed=opts.seed)


class KeySyncPipeline:
    """``pipe = KeySyncPipeline.from_pretrained(DIR)``; ``pipe(frames, audio, fps=25).frames`` are the dubbed
    frames, ``pipe.dub_file(video, audio, output)`` dubs files."""

    dubber_class = LatentDubber  # makes the output latents; the autoencode baseline swaps in SourceLatents

    def __init__(self, model: KeySyncModel, device="cpu", dtype=torch.float32, encoder_dir: str | None = None, note: str = "",
                 random_encoders: bool = False):
        model.to(device, dtype)  # a folder may hold fp16 weights (the shipped small model): compute in dtype
        self.model = model.eval()
        model.vae.check_encoder()  # fail now, not after tracking the whole video
        self.device, self.dtype, self.note = torch.device(device), dtype, note
        specs = model.audio
        self.features = {stage: build_features(specs[stage], device, encoder_dir, random_weights=random_encoders)
                         for stage in ("keyframe", "interpolation")}
        for stage, extractor in self.features.items():
            want = getattr(model, stage).config.audio_feature_dim
            if extractor.dim != want:
                raise KeySyncError(f"{stage} audio features have {extractor.dim} values per row but the network expects {want}; the model folder's audio settings do not match its weights")

    def to(self, device=None, dtype: torch.dtype | None = None) -> "KeySyncPipeline":
        """Move the networks (and the audio encoders) to ``device`` and/or compute in ``dtype``."""
        self.device = torch.device(device) if device is not None else self.device
        self.dtype = dtype or self.dtype
        self.model.to(self.device, self.dtype)
        for extractor in self.features.values():
            if hasattr(extractor, "model"):  # a speech encoder; log-mel features have no weights
                extractor.model.to(self.device)
        return self

    def compile(self, backend: str = "inductor", mode: str | None = None) -> "KeySyncPipeline":
        """Compile both networks' repeated blocks with ``torch.compile`` (``KeySyncNet.compile_blocks``). The
        first dub waits for the compiler (a minute or more; minutes on a CPU), later dubs in this process run
        faster; the output equals the uncompiled one to float rounding. ``mode``: ``torch.compile``'s (e.g.
        "max-autotune" on a GPU)."""
        for net in (self.model.keyframe, self.model.interpolation):
            net.compile_blocks(backend=backend, mode=mode)
        return self

    def channels_last(self) -> "KeySyncPipeline":
        """Keep the 2-D convolutions' weights of both sampling networks and the VAE channels-last (NHWC): a
        convolution with such a weight makes a channels-last output, so the activations follow, in the layout
        that GPU tensor cores prefer (cuDNN's NHWC kernels). The output equals the default layout's to float
        rounding. Measured only on a CPU, where the small model's dub is 6 % slower with it
        (``benchmarks/speed.py --channels-last`` measures it on a GPU). Call it before ``compile``.
        (``Module.to(memory_format=...)`` would refuse the temporal layers' 5-D weights.)"""
        for net in (self.model.keyframe, self.model.interpolation, self.model.vae):
            for module in net.modules():
                if isinstance(module, torch.nn.Conv2d):
                    module.to(memory_format=torch.channels_last)
        return self

    def fp8(self, mode: str = "on") -> "KeySyncPipeline":
        """FP8 matmuls in both sampling networks (``keysync.models.fp8``): ``on``, torchao's, on a GPU with
        FP8 tensor cores and ``dtype`` bfloat16; ``emulate``, their rounding on any device, to see what FP8
        does to the output. Call it before ``compile``. Not float rounding: opt-in only."""
        from ..models.fp8 import MODES, emulate_fp8, quantize_fp8

        if mode not in MODES:
            raise KeySyncError(f"--fp8 {mode}: choose one of {', '.join(MODES)}")
        for net in (self.model.keyframe, self.model.interpolation):
            quantize_fp8(net, self.device, self.dtype) if mode == "on" else emulate_fp8(net)
        return self

    @classmethod
    def from_pretrained(cls, model: str | Path | None = None, device="cpu", dtype=torch.float32, random_weights: bool = False, **kwargs):
        """``model``: None (the released KeySync weights, fetched and converted once), ``small`` (the demo
        model shipped in the package, trained on synthetic faces), a model folder or a hub id; with
        ``random_weights`` a preset name, its speech encoders random too (plumbing tests and speed measurements only)."""
        if random_weights:
            return cls(KeySyncModel.from_preset(str(model)), device, dtype, random_encoders=True,
                       note=f"RANDOM WEIGHTS ({model} preset): the output is noise, for testing the plumbing only", **kwargs)
        model = resolve_model(model)
        audio_dir = Path(model) / "audio"  # where `keysync download` puts HuBERT and WavLM
        kwargs.setdefault("encoder_dir", str(audio_dir) if audio_dir.is_dir() else None)
        return cls(KeySyncModel.from_pretrained(model), device, dtype, **kwargs)

    def dubber(self, opts: DubOptions) -> LatentDubber:
        """The sampler of both diffusion stages, as ``opts`` asks (``sampling_options``)."""
        return self.dubber_class(self.model, sampling_options(self.model, opts))

    def __call__(self, frames, audio, *, fps: float | None = None, sample_rate: int = SAMPLE_RATE,
                 options: DubOptions | None = None, face: FaceLocation | None = None, windows: tuple[int, int] | None = None,
                 **overrides) -> "DubOutput":
        """Dub frames: ``frames`` an (N, H, W, 3) array or an iterable of RGB arrays or PIL images at ``fps``
        (or a video file's path); ``audio`` a waveform at ``sample_rate`` ((samples,) or (channels,
        samples)), or an audio file's path. Options are a ``DubOptions`` or its fields as keywords (``face_index=1``).

        The face is tracked before this returns; the dubbed frames are made as ``.frames`` is iterated.
        ``face``: the ``location`` of an earlier call on the same video, used instead of tracking again;
        ``windows``: ``(first, stop)`` dubs only those sampling windows' frames (``window_starts``), equal to
        the same frames of the whole dub: a long video split so, and joined, shows no seam.
        """
        opts = replace(options or DubOptions(), **overrides)
        wave = load_audio(audio) if isinstance(audio, (str, Path)) else resample_to_16k(audio, sample_rate)
        return self._dub(frame_source(frames, fps), wave, opts, face, windows)

    def dub_file(self, video, audio, output, options: DubOptions | None = None, overwrite: bool = False,
                 face: FaceLocation | None = None, windows: tuple[int, int] | None = None) -> Path:
        """Dub a video file with an audio (or video) file's speech into ``output`` (H.264 + AAC). ``face`` and
        ``windows`` as for ``__call__``; with ``windows`` the file has no sound (``join_videos`` gives the
        joined pieces the whole soundtrack)."""
        opts = options or DubOptions()
        output = check_output_path(output, inputs=(video, audio), overwrite=overwrite)
        source = VideoSource(video)
        result = self._dub(source, load_audio(audio), opts, face, windows)
        info = source.info
        with VideoWriter(output, info.width, info.height, rate=info.average_rate, time_base=info.time_base,
                         audio=None if windows else result.audio, audio_rate=SAMPLE_RATE, crf=opts.crf, overwrite=overwrite,
                         encoder=opts.encoder) as writer:
            frames = in_background(result.frames, depth=4)  # paste the next frames while this one encodes
            with closing(frames):
                for time, image in zip(result.times, frames):
                    writer.write(image, float(time))
        return output

    def _dub(self, source, wave: np.ndarray, opts: DubOptions, face: FaceLocation | None = None,
             windows: tuple[int, int] | None = None) -> "DubOutput":
        if opts.long_audio not in LONG_AUDIO or opts.short_audio not in SHORT_AUDIO:
            raise KeySyncError(f"length policies: long audio one of {LONG_AUDIO}, short audio one of {SHORT_AUDIO}")
        if opts.speed not in SPEEDS:
            raise KeySyncError(f"speed {opts.speed!r}: choose one of {', '.join(SPEEDS)}")
        if opts.steps is not None:
            check_steps(opts.steps)
        check_deep_cache(opts.deep_cache)
        if opts.paste not in PASTE_REGIONS:
            raise KeySyncError(f"paste region {opts.paste!r}: choose one of {', '.join(PASTE_REGIONS)}")
        if self.note:
            print(f"keysync: {self.note}", file=sys.stderr)
        info = source.info
        size, factor = self.model.crop_size, self.model.vae.downsample_factor
        timings = dict.fromkeys(STAGES, 0.0)
        clock = time.perf_counter()

        # 1. track
        keyframe_images = reference_images = None
        if face is None:
            decoded = in_background(source.frames(), depth=4)  # the next frames decode while the tracker works
            if not windows or windows[0] == 0:
                keyframe_images = FirstKeyframeImages(decoded, first_window_keyframes(opts.batches_per_window))
            frames = tqdm(decoded if keyframe_images is None else keyframe_images, total=info.frame_count or None, desc="tracking",
                          disable=not opts.progress, unit="frame")
            reference_images = ReferenceImages(opts.ref_frame)
            with closing(decoded):
                face = locate_face(frames, load_backend(opts.backend), size, self.model.crop_plan, face_index=opts.face_index,
                                   name=info.path, observe=reference_images.observe)
        tracked, target, boxes, fill = face.tracked, face.target, face.boxes, face.fill

        timeline = make_timeline(tracked.times, float(info.average_rate), math.ceil(len(wave) / SAMPLES_PER_FRAME), opts.long_audio, opts.short_audio)
        plan = plan_frames(timeline.num_model_frames, opts.batches_per_window)
        window_starts = np.searchsorted(timeline.output_model, [w.first_frame for w in plan.windows])
        first, stop = windows or (0, len(plan.windows))
        if not 0 <= first < stop <= len(plan.windows):
            raise KeySyncError(f"windows {first}..{stop}: this dub has sampling windows 0..{len(plan.windows)}")
        out_first, out_stop = window_starts[first], (window_starts[stop] if stop < len(plan.windows) else len(timeline.output_model))
        start = float(tracked.times[0])  # model frame 0 is shown at the first frame's timestamp
        # the speech's time 0 is the video container's start, as when FFmpeg muxes the two files
        speech = fit_audio_to_frames(wave, timeline.num_model_frames, start - info.start).reshape(-1)
        soundtrack = np.pad(speech, (int(round(start * SAMPLE_RATE)), 0))  # the writer's audio starts at time 0
        feats = {  # on the networks' device and in their dtype, once, for every window and the reference
            s: frame_windows(f(speech, frames=plan.padded_frames), getattr(self.model, s).config.audio_window).to(self.device, self.dtype)
            for s, f in self.features.items()
        }

        occluders = load_occluders(opts.occluders, len(target.present), info) if opts.occluders else None
        if opts.ref_frame is not None:
            if not 0 <= opts.ref_frame < len(target.present) or not target.present[opts.ref_frame]:
                raise KeySyncError(f"--ref-frame {opts.ref_frame}: the target face is not visible on that frame; run keysync faces to see where it is")
            ref = opts.ref_frame
        else:
            candidates = np.flatnonzero(target.present)
            if occluders is not None:  # prefer frames where nothing covers the face
                clear = [i for i in candidates if not _covers_face(occluders[i], target.landmarks[i])]
                candidates = np.asarray(clear) if clear else candidates
            ref = choose_reference(target, candidates)

        mask_kind = opts.mask or self.model.mask
        dubber = self.dubber(opts)

        def mask_for(i: int) -> np.ndarray:
            occluder = None if occluders is None else cut_crop(np.asarray(occluders[i], np.float32), boxes[i])
            return build_mask(mask_kind, boxes[i].to_crop(target.landmarks[fill[i]]), size, occluder)

        limits = jaw_limits(target) if opts.paste == "jaw" else None

        def paste_mask(i: int) -> np.ndarray:
            mask = mask_for(i)
            return mask if limits is None else mask * above_line(boxes[i].to_crop(limits[i]), size)

        def encode(indices: list[int], crops: dict[int, np.ndarray]):
            pixels = torch.from_numpy(np.stack([crops[i] for i in indices])).permute(0, 3, 1, 2)
            if self.device.type == "cuda":  # page-locked: the copy runs without a staging copy, beside the GPU's work
                pixels = pixels.pin_memory().to(self.device, non_blocking=True)
            pixels = pixels.to(self.device, self.dtype) / 127.5 - 1
            with torch.no_grad():
                latents = torch.cat([self.model.vae.encode_frames(p) for p in pixels.split(16)])
            masks = np.stack([latent_mask(mask_for(i), factor) if target.present[i] else np.zeros((size // factor,) * 2, np.float32) for i in indices])
            return latents, torch.from_numpy(masks)[:, None].to(self.device, self.dtype)

        ref_image = reference_images.images.get(ref) if reference_images is not None else None
        if ref_image is None:
            ref_image = source.fetcher(tracked.times).fetch(ref)
        reference_images = None  # its frames are no longer needed
        ref_latent, ref_mask = encode([ref], {ref: cut_crop(ref_image, boxes[ref])})
        ref_model = int(np.argmin(np.abs(timeline.model_source - ref)))
        anchor = FrameData(
            ref_model, ref_latent, ref_mask,
            feats["keyframe"][ref_model][None], feats["interpolation"][ref_model][None],
        )

        dilate, blur = opts.feather
        timings["tracking"] += time.perf_counter() - clock

        def shown(p: int) -> int:
            """The source frame shown at padded timeline position ``p``."""
            return int(timeline.model_source[plan.source_frame(p)])

        def frame_data(frames: list[int], parts: list[tuple[list[int], tuple[torch.Tensor, torch.Tensor]]],
                       keyframes_only: bool = False) -> FrameData:
            """Latents, masks and audio of padded timeline ``frames``, from ``parts``: (source frames, their
            ``encode``d latents and masks)."""
            row = {s: r for r, s in enumerate(s for sources, _ in parts for s in sources)}
            pick = [row[shown(p)] for p in frames]
            lat, msk = (torch.cat([part[k] for _, part in parts])[pick] for k in (0, 1))
            audio = {s: feats[s][frames] for s in feats}
            return FrameData(frames[0], lat, msk, audio["keyframe"], audio["interpolation"], tuple(frames) if keyframes_only else None)

        def prepare(reader) -> Iterator[tuple[int, FrameData, bool]]:
            """Stage 2, per window: decode the model frames, cut their face crops and VAE-encode them; yields
            (window, its data, whether the data holds every frame): its keyframes' data first, as soon as
            they are encoded, so that the keyframe stage runs while the other frames are encoded, then the
            whole window's. The window before ``first`` gives its keyframes alone (its last keyframe is
            all that is needed of it). The first window's keyframes come from the frames tracking kept,
            where it kept them (``FirstKeyframeImages``), so they do not wait for the window's decode.
            Keyframe crops are encoded in a batch of their own, so their latents are the same either way."""
            def cut(images, sources) -> dict[int, np.ndarray]:
                return {i: cut_crop(images(i), boxes[i]) for i in sources}

            for w in range(max(0, first - 1), stop):
                window = plan.windows[w]
                clock = time.perf_counter()
                frames = list(range(window.segments[0], window.segments[-1] + CLIP))
                key_sources = list(dict.fromkeys(shown(p) for p in window.keyframes))
                kept = None
                if w == 0 and keyframe_images is not None:
                    kept, keyframe_images.images = keyframe_images.get(key_sources), {}
                if kept is not None:  # the window is decoded after its keyframes are handed on
                    crops, key_crops = None, cut(kept.get, key_sources)
                else:  # in playback order (backwards when played back and forth); before ``first``, the keyframes alone
                    crops = key_crops = cut(reader.fetch, key_sources if w < first else dict.fromkeys(shown(p) for p in frames))
                keys = (key_sources, encode(key_sources, key_crops))
                timings["encode"] += time.perf_counter() - clock
                yield w, frame_data(window.keyframes, [keys], keyframes_only=True), False
                if w < first:
                    continue
                clock = time.perf_counter()
                if crops is None:
                    crops = cut(reader.fetch, dict.fromkeys(shown(p) for p in frames))
                rest = [i for i in crops if i not in key_sources]
                data = frame_data(frames, [keys, *([(rest, encode(rest, crops))] if rest else [])])
                timings["encode"] += time.perf_counter() - clock
                yield w, data, True

        def timed(items: Iterator, stage: str) -> Iterator:
            """``items``, the time spent making each added to ``timings[stage]``."""
            items = iter(items)
            while True:
                clock = time.perf_counter()
                item = next(items, None)
                timings[stage] += time.perf_counter() - clock
                if item is None:
                    return
                yield item

        def decode(groups: Iterator[tuple[torch.Tensor, int]]) -> Iterator[dict[int, np.ndarray]]:
            """Stage 4: VAE-decode each group of latents; yields {model frame: image}. A stage of its own, so
            that it runs beside the sampling of the next group (on two CPU cores the small model's dub takes
            0.6 s less, as neither keeps both cores busy alone)."""
            for latents, first_frame in groups:
                clock = time.perf_counter()
                with torch.no_grad():
                    pixels = self.model.vae.decode_frames(latents, opts.decode_frames)
                images = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
                timings["decode"] += time.perf_counter() - clock
                yield {first_frame + i: image for i, image in enumerate(images)}

        def sample(prepared: Iterator[tuple[int, FrameData, bool]]) -> Iterator[tuple[torch.Tensor, int]]:
            """Stage 3, per window: sample the latents (keyframes, then interpolation, a group of segments at a
            time); yields them ``decode_frames`` at a time as soon as they are ready (``decode_groups``), with
            the model frame of the first."""
            previous = keyframes = None
            total = plan.windows[stop - 1].stop_frame - plan.windows[first].first_frame
            bars = {stage: tqdm(total=total, desc=stage, disable=not opts.progress, unit="frame")
                    for stage in ("keyframes", "interpolation")}  # model frames done by each stage
            for w, data, whole in prepared:
                clock = time.perf_counter()
                if w < first:
                    previous = dubber.last_keyframe(plan, w, data, anchor)
                    timings["sampling"] += time.perf_counter() - clock
                    continue
                window = plan.windows[w]
                done = window.stop_frame - window.first_frame
                if keyframes is None:
                    keyframes = dubber.sample_keyframes(plan, w, data, anchor)
                    bars["keyframes"].update(done)
                if not whole:  # the window's other frames come next
                    timings["sampling"] += time.perf_counter() - clock
                    continue
                result = dubber.interpolate(plan, w, data, keyframes, previous, on_stage=lambda stage: bars[stage].update(done))
                previous, keyframes = result.last_keyframe, None
                timings["sampling"] += time.perf_counter() - clock
                first_frame = window.first_frame
                for group in decode_groups(timed(result.parts, "sampling"), opts.decode_frames):
                    yield group, first_frame
                    first_frame += len(group)
            for bar in bars.values():
                bar.close()

        def generate() -> Iterator[np.ndarray]:
            """Stage 5, per output frame: read its source frame, paste the generated lower face, yield it.
            Stages 2, 3 and 4 run in threads of their own, joined by bounded queues, so the wall time approaches
            the slowest stage."""
            writing = source.fetcher(tracked.times)
            generated: dict[int, np.ndarray] = {}
            windows = in_background(decode(in_background(sample(in_background(prepare(source.fetcher(tracked.times)))))))
            bar = tqdm(total=out_stop - out_first, desc="writing", disable=not opts.progress, unit="frame")
            with closing(windows), bar:
                for j in range(out_first, out_stop):
                    k = timeline.output_model[j]
                    while k not in generated:
                        generated = next(windows)  # the frames of the window that holds model frame k
                    clock = time.perf_counter()
                    src = int(timeline.output_source[j])
                    image = writing.fetch(src)
                    shown = int(timeline.model_source[k])
                    if target.present[src] and target.present[shown]:
                        image = paste_back(image, generated[k], boxes[shown], paste_mask(shown), dilate=dilate, blur=blur, color_match=opts.color_match)
                    timings["paste"] += time.perf_counter() - clock
                    bar.update(1)
                    yield image

        return DubOutput(generate(), timeline.output_times[out_first:out_stop], soundtrack, target, timings, (info.width, info.height),
                         info.average_rate, face, window_starts)
