"""Both diffusion stages on latents, one streaming window at a time.

The caller hands in per-frame inputs (source latents, masks, audio features) for the frames a window
needs and gets back the window's output latents: all at once (``window``), or a group of interpolation
segments at a time as each is sampled (``window_parts``), so that decoding and pasting start after the
keyframes and the first group rather than after the whole window (up to 169 frames). Noise is drawn per
clip in a fixed order from a generator seeded by (seed, window), so the output does not depend on how many
clips share a network call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from ..diffusion import Conditioning, Guidance, MaskedDenoiser, sample_euler, sampling_sigmas
from ..diffusion.speed import StageSchedule, stage_schedules
from ..models import KeySyncModel
from .plan import CLIP, STEP, Plan, Window


@dataclass
class FrameData:
    """Per-frame inputs for frames ``start .. start + n - 1`` of the padded timeline, or for the frames
    ``frames`` (the keyframes alone, say)."""

    start: int
    latents: torch.Tensor  # (n, 4, h, w) scaled source latents
    masks: torch.Tensor  # (n, 1, h, w), 1 = regenerate
    keyframe_audio: torch.Tensor  # (n, 2 (2k+1), D_k): see keysync.audio.frame_windows
    interpolation_audio: torch.Tensor  # (n, 2 (2k+1), D_i)
    frames: tuple[int, ...] | None = None  # the frame of each row, where they are not start, start + 1, ...

    def take(self, name: str, frames: list[int]) -> torch.Tensor:
        tensor = getattr(self, name)
        if self.frames is not None:
            rows = {f: r for r, f in enumerate(self.frames)}
            if any(f not in rows for f in frames):
                raise IndexError(f"frames {sorted(set(frames) - set(rows))} are not among {self.frames}")
            return tensor[[rows[f] for f in frames]]
        index = [f - self.start for f in frames]
        if min(index) < 0 or max(index) >= len(tensor):
            raise IndexError(f"frames {min(frames)}..{max(frames)} outside {self.start}..{self.start + len(tensor) - 1}")
        return tensor[index]


@dataclass
class WindowKeyframes:
    """A window's sampled keyframe latents, by frame, and the noise generator its interpolation draws from next."""

    latents: dict[int, torch.Tensor]
    generator: torch.Generator | None


@dataclass
class WindowLatents:
    """A window's output as ``window_parts`` gives it: the keyframes are sampled, the rest comes as iterated."""

    last_keyframe: torch.Tensor | None  # the window's last keyframe latent, which the next window starts from
    parts: Iterator[torch.Tensor]  # the latents of frames first..stop-1 in order, one group of segments at a time


def decode_groups(parts: Iterator[torch.Tensor], size: int) -> Iterator[torch.Tensor]:
    """A window's latents, handed on from ``parts`` whenever whole groups of ``size`` frames are in (the last
    group what is left): the VAE decoder's temporal layers then see the same groups of frames, from the
    window's first, as when the window is decoded whole, and decoding starts before the window ends."""
    pending = None
    for part in parts:
        pending = part if pending is None else torch.cat([pending, part])
        whole = len(pending) - len(pending) % size
        if whole:
            yield pending[:whole]
            pending = pending[whole:]
    if pending is not None and len(pending):
        yield pending


@dataclass
class SamplingOptions:
    keyframe_schedule: StageSchedule = field(default_factory=lambda: stage_schedules()[0])  # steps, and how many guided
    interpolation_schedule: StageSchedule = field(default_factory=lambda: stage_schedules()[1])
    guidance: Guidance = field(default_factory=Guidance)  # keyframes
    interpolation_guidance: Guidance | None = None  # None: the same as the keyframes'
    clips_per_call: int = 2  # keyframe batches / interpolation segments per network call (x3 for guidance); results differ by float rounding at most
    seed: int = 0


class LatentDubber:
    """Keyframe then interpolation sampling for the windows of a ``Plan``."""

    def __init__(self, model: KeySyncModel, options: SamplingOptions | None = None):
        self.model = model
        self.options = options or SamplingOptions()

    def _noise(self, clips: int, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        shape = (clips * CLIP, *like.shape[1:])
        if like.device.type == "meta":
            return torch.empty(shape, device="meta", dtype=like.dtype)
        return torch.randn(shape, generator=generator).to(like.device, like.dtype)

    def clip_groups(self, clips: int, drain: bool = False) -> list[tuple[int, int]]:
        """The clips that share a network call, as (first, stop): ``clips_per_call`` at a time. With
        ``drain`` (a dub's last window) the very last clip has a call of its own, so that only its 13 frames
        are left for the paste and the video encoder once sampling ends: those stages take a group's frames
        as it is sampled, and on a GPU a clip costs about the same in a call of its own."""
        step = self.options.clips_per_call
        groups = [(start, min(clips, start + step)) for start in range(0, clips, step)]
        if drain and groups and groups[-1][1] - groups[-1][0] > 1:
            first, stop = groups.pop()
            groups += [(first, stop - 1), (stop - 1, stop)]
        return groups

    def _sample_groups(self, net, noise: torch.Tensor, cond: Conditioning, guide: Guidance, schedule: StageSchedule,
                       drain: bool = False) -> Iterator[torch.Tensor]:
        """Sample ``cond``'s clips in the groups of ``clip_groups`` (each its own sampling run), yielding each
        group's latents: guided steps first, then plain conditional passes (audio and reference) as the
        schedule says."""
        sigmas = sampling_sigmas(schedule.steps)
        for first, stop in self.clip_groups(cond.context.shape[0], drain):
            part = cond.select_clips(first, stop)
            yield sample_euler(self._step_denoisers(net, guide, schedule), noise[first * CLIP : stop * CLIP], part, sigmas)

    @staticmethod
    def _step_denoisers(net, guide: Guidance, schedule: StageSchedule) -> list:
        """One denoiser per step of a sampling run: guided or not, the whole network or its deep features
        reused (``StageSchedule.deep_steps``, one store per run)."""
        deep = {} if schedule.deep_cache > 1 else None
        whole, reusing = MaskedDenoiser(net, deep=deep), MaskedDenoiser(net, deep=deep, reuse=True) if deep is not None else None

        def guided(denoiser):
            return lambda x, s, c: guide(denoiser, x, s, c)

        return [(guided if i < schedule.guided else lambda d: d)(whole if fresh else reusing)
                for i, fresh in enumerate(schedule.deep_steps())]

    @torch.no_grad()
    def window(self, plan: Plan, index: int, data: FrameData, anchor: FrameData, previous_keyframe: torch.Tensor | None,
               on_stage: Callable[[str], None] | None = None):
        """Output latents for ``plan.windows[index]`` -> (latents of frames first..stop-1, last keyframe latent).

        ``data`` must cover the window's segment frames; ``anchor`` holds the reference frame (1 frame);
        ``previous_keyframe`` is the last keyframe latent of the previous window (None for the first);
        ``on_stage("keyframes")`` and ``on_stage("interpolation")`` are called as each stage ends (progress).
        """
        result = self.window_parts(plan, index, data, anchor, previous_keyframe, on_stage)
        return torch.cat(list(result.parts)), result.last_keyframe

    @torch.no_grad()
    def window_parts(self, plan: Plan, index: int, data: FrameData, anchor: FrameData, previous_keyframe: torch.Tensor | None,
                     on_stage: Callable[[str], None] | None = None) -> WindowLatents:
        """``window``, streamed: the keyframes are sampled now, the interpolated frames as ``parts`` is
        iterated, a group of ``clips_per_call`` segments at a time (the same latents, bit for bit)."""
        keyframes = self.sample_keyframes(plan, index, data, anchor)
        (on_stage or (lambda stage: None))("keyframes")
        return self.interpolate(plan, index, data, keyframes, previous_keyframe, on_stage)

    @torch.no_grad()
    def sample_keyframes(self, plan: Plan, index: int, data: FrameData, anchor: FrameData) -> WindowKeyframes:
        """The keyframe stage of ``plan.windows[index]`` alone: ``data`` needs only the keyframes' rows, so a
        dub may start it before the window's other frames are ready."""
        generator = self._generator(index)
        return WindowKeyframes(self._keyframes(plan.windows[index], data, anchor, generator), generator)

    def interpolate(self, plan: Plan, index: int, data: FrameData, keyframes: WindowKeyframes, previous_keyframe: torch.Tensor | None,
                    on_stage: Callable[[str], None] | None = None) -> WindowLatents:
        """The interpolation stage of ``plan.windows[index]`` between ``keyframes`` (``sample_keyframes``), the
        first one replaced by ``previous_keyframe`` (the previous window's last; None for the first window);
        the frames come as ``parts`` is iterated (``window_parts``)."""
        window: Window = plan.windows[index]
        latents = dict(keyframes.latents)
        if previous_keyframe is not None:
            latents[window.segments[0]] = previous_keyframe

        @torch.no_grad()  # for a generator, torch turns gradients off around each step of it
        def parts() -> Iterator[torch.Tensor]:
            for frames, out in self._interpolate(window, data, latents, keyframes.generator, drain=index == len(plan.windows) - 1):
                keep = [i for i, f in enumerate(frames) if window.first_frame <= f < window.stop_frame]
                if keep:
                    yield out[keep[0] : keep[-1] + 1]
            if on_stage is not None:
                on_stage("interpolation")

        return WindowLatents(latents[window.keyframes[-1]], parts())

    @torch.no_grad()
    def last_keyframe(self, plan: Plan, index: int, data: FrameData, anchor: FrameData) -> torch.Tensor:
        """The last keyframe latent of ``plan.windows[index]``, as ``window`` gives it, from the keyframe stage
        alone: a window's keyframes do not depend on earlier windows, so dubbing windows ``i..j`` after this
        call for window ``i - 1`` gives what dubbing them all gives (the pieces of ``keysync batch --split-long``)."""
        window = plan.windows[index]
        return self.sample_keyframes(plan, index, data, anchor).latents[window.keyframes[-1]]

    def _generator(self, index: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.options.seed * 100_003 + index)

    def _keyframes(self, window: Window, data: FrameData, anchor: FrameData, generator) -> dict[int, torch.Tensor]:
        net = self.model.keyframe
        ref = anchor.start
        slots = [b.slots(ref) for b in window.batches]

        def gather(name):
            rows = [anchor.take(name, [ref])[0] if j == 0 else data.take(name, [f])[0] for s in slots for j, f in enumerate(s)]
            return torch.stack(rows)

        known = gather("latents")
        cond = Conditioning(
            concat=net.embed_frames(anchor.latents[:1].expand(len(slots), -1, -1, -1)),
            context=net.embed_audio(gather("keyframe_audio").unflatten(0, (len(slots), CLIP))),
            known=known,
            mask=gather("masks"),
        )
        out = torch.cat(list(self._sample_groups(net, self._noise(len(slots), known, generator), cond, self.options.guidance,
                                                 self.options.keyframe_schedule)))
        result = {}
        for b, batch in enumerate(window.batches):
            for j, frame in enumerate(batch.keyframes):
                result[frame] = out[b * CLIP + 1 + j]
        return result

    def _interpolate(self, window: Window, data: FrameData, keyframes: dict[int, torch.Tensor], generator,
                     drain: bool = False) -> Iterator[tuple[list[int], torch.Tensor]]:
        """Per group of segments as it is sampled: (frame indices, their latents); ``drain`` for a dub's last window."""
        net = self.model.interpolation
        frames = [s + t for s in window.segments for t in range(CLIP)]
        ends = torch.stack([torch.stack([keyframes[s], keyframes[s + STEP]], dim=1) for s in window.segments])
        known = data.take("latents", frames)
        cond = Conditioning(
            concat=net.embed_frames(ends),
            context=net.embed_audio(data.take("interpolation_audio", frames).unflatten(0, (len(window.segments), CLIP))),
            known=known,
            mask=data.take("masks", frames),
        )
        guide = self.options.interpolation_guidance or self.options.guidance
        groups = self._sample_groups(net, self._noise(len(window.segments), known, generator), cond, guide, self.options.interpolation_schedule, drain)
        done = 0
        for out in groups:
            out = out.reshape(-1, CLIP, *out.shape[1:])
            group = slice(done, done + len(out))
            out[:, 0], out[:, -1] = ends[group, :, 0], ends[group, :, 1]
            # Segments share their boundary keyframe: keep each segment's first 13 frames, plus the very last.
            last = group.stop == len(window.segments)
            starts = window.segments[group]
            indices = [s + t for s in starts for t in range(STEP)] + ([starts[-1] + STEP] if last else [])
            yield indices, torch.cat([out[:, :STEP].flatten(0, 1), *([out[-1, -1:]] if last else [])])
            done = group.stop


class SourceLatents(LatentDubber):
    """No diffusion: every frame keeps its source latent. Dubbing with it shows what the face crop, the
    VAE and the paste alone lose: the best any model with this VAE can do (``keysync bench --method
    autoencode``)."""

    def sample_keyframes(self, plan: Plan, index: int, data: FrameData, anchor: FrameData) -> WindowKeyframes:
        return WindowKeyframes({}, None)

    def interpolate(self, plan: Plan, index: int, data: FrameData, keyframes: WindowKeyframes, previous_keyframe: torch.Tensor | None,
                    on_stage: Callable[[str], None] | None = None) -> WindowLatents:
        window = plan.windows[index]
        if on_stage is not None:
            on_stage("interpolation")
        return WindowLatents(None, iter([data.take("latents", list(range(window.first_frame, window.stop_frame)))]))

    def last_keyframe(self, plan: Plan, index: int, data: FrameData, anchor: FrameData) -> None:
        return None
