"""Planning and two-stage sampling on latents (random weights: these test the plumbing, not quality)."""

import argparse
import copy
import resource

import pytest
import torch

from keysync.diffusion import Guidance, stage_guidance
from keysync.models import KeySyncModel
from keysync.pipeline.commands import parse_guidance
from keysync.pipeline.plan import CLIP, STEP, plan_frames
from keysync.diffusion.speed import StageSchedule
from keysync.pipeline.sampling import FrameData, LatentDubber, SamplingOptions


@pytest.mark.parametrize("length", [1, 10, 14, 15, 27, 28, 170, 171, 339, 1125])
@pytest.mark.parametrize("per_window", [1, 3])
def test_plan_covers_every_frame_once(length, per_window):
    plan = plan_frames(length, batches_per_window=per_window)
    assert plan.padded_frames >= length and (plan.padded_frames - CLIP) % STEP == 0
    assert plan.keyframes == tuple(range(0, plan.padded_frames, STEP))
    produced = [f for w in plan.windows for f in range(w.first_frame, w.stop_frame)]
    assert produced == list(range(length))
    assert plan.segments == list(range(0, plan.padded_frames - 1, STEP))
    for w in plan.windows:
        for batch in w.batches:
            slots = batch.slots(anchor=7)
            assert len(slots) == CLIP and slots[0] == 7  # every batch opens with the identity anchor
        # a window's segments run between keyframes it has (or the previous window's last one)
        kfs = {k for b in w.batches for k in b.keyframes}
        assert all(s + STEP in kfs for s in w.segments)


def test_plan_rejects_empty():
    with pytest.raises(ValueError, match="no frames"):
        plan_frames(0)


FEW_STEPS = dict(keyframe_schedule=StageSchedule(3, 3), interpolation_schedule=StageSchedule(3, 3))  # plumbing: sigma_max included


def frame_data(plan, latent=8, feat=768, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    n = plan.padded_frames

    def make(*shape):
        if device == "meta":
            return torch.empty(*shape, device="meta")
        return torch.randn(*shape, generator=g)

    masks = torch.zeros(n, 1, latent, latent, device=device)
    masks[:, :, latent // 2 :] = 1
    return FrameData(0, make(n, 4, latent, latent), masks, make(n, 2, feat), make(n, 2, feat))


def run(model, plan, data, options):
    dubber = LatentDubber(model, options)
    anchor = FrameData(0, data.latents[:1], data.masks[:1], data.keyframe_audio[:1], data.interpolation_audio[:1])
    out, previous = [], None
    for i in range(len(plan.windows)):
        latents, previous = dubber.window(plan, i, data, anchor, previous)
        out.append(latents)
    return torch.cat(out)


@pytest.fixture(scope="module")
def tiny():
    """A one-level network on 8x8 latents: the smallest model the plumbing runs through."""
    torch.manual_seed(0)
    net = dict(latent_size=8, model_channels=32, channel_mult=(1,), attention_levels=(0,), num_head_channels=16,
               context_dim=32, audio_feature_dim=768)
    vae = dict(block_out_channels=(32,), layers_per_block=1, down_block_types=("DownEncoderBlock2D",))
    return KeySyncModel.from_config(net, vae).eval()


def test_sampling_tiny_covers_frames_and_keeps_unmasked_latents(tiny):
    plan = plan_frames(30)
    data = frame_data(plan)
    out = run(tiny, plan, data, SamplingOptions(clips_per_call=2))
    assert out.shape == (30, 4, 8, 8)
    keep = (data.masks[:30] == 0).expand_as(out)
    # kept exactly up to the rounding of the last Euler step (x + (0 - s)(x - D)/s)
    assert torch.allclose(out[keep], data.latents[:30][keep], atol=1e-5)
    assert (out[~keep] - data.latents[:30][~keep]).abs().mean() > 0.1  # the masked half was regenerated


def test_sampling_is_seeded_and_independent_of_batching(tiny):
    plan = plan_frames(40)
    data = frame_data(plan)
    a = run(tiny, plan, data, SamplingOptions(clips_per_call=1, seed=3, **FEW_STEPS))
    b = run(tiny, plan, data, SamplingOptions(clips_per_call=3, seed=3, **FEW_STEPS))
    c = run(tiny, plan, data, SamplingOptions(clips_per_call=3, seed=4, **FEW_STEPS))
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, c, atol=1e-3)


def test_a_dubs_last_clip_is_sampled_in_a_call_of_its_own(tiny):
    """The last window's last clip gets its own call, so that the paste and the encoder are left with 13
    frames when sampling ends, not a whole group's; other windows keep ``clips_per_call`` groups, and the
    frames are the same to float rounding (the noise is drawn per clip, whatever the grouping)."""
    dubber = LatentDubber(tiny, SamplingOptions(**FEW_STEPS, clips_per_call=2))
    assert dubber.clip_groups(4) == [(0, 2), (2, 4)]
    assert dubber.clip_groups(4, drain=True) == [(0, 2), (2, 3), (3, 4)]
    assert dubber.clip_groups(5, drain=True) == [(0, 2), (2, 4), (4, 5)]  # the last group is one clip already
    assert LatentDubber(tiny, SamplingOptions(clips_per_call=64)).clip_groups(12, drain=True) == [(0, 11), (11, 12)]

    plan = plan_frames(49)  # one window, 4 segments: the last group of two is split
    data = frame_data(plan)
    anchor = FrameData(0, data.latents[:1], data.masks[:1], data.keyframe_audio[:1], data.interpolation_audio[:1])
    parts = list(dubber.window_parts(plan, 0, data, anchor, None).parts)
    assert [len(p) for p in parts] == [26, 13, 10]  # the last segment stops at frame 48
    separately = run(tiny, plan, data, SamplingOptions(**FEW_STEPS, clips_per_call=1))
    assert torch.allclose(torch.cat(parts), separately[: len(torch.cat(parts))], atol=1e-5)


def test_interpolation_guidance_changes_only_the_frames_between_keyframes(tiny):
    plan = plan_frames(30)
    data = frame_data(plan)
    same = run(tiny, plan, data, SamplingOptions(guidance=Guidance(2, 1), seed=1, **FEW_STEPS))
    other = run(tiny, plan, data, SamplingOptions(guidance=Guidance(2, 1), interpolation_guidance=Guidance(6, 1), seed=1, **FEW_STEPS))
    keyframes = [k for k in plan.keyframes if k < 30]
    between = [f for f in range(30) if f not in keyframes]
    assert torch.equal(same[keyframes], other[keyframes])
    assert (same[between] - other[between]).abs().max() > 1e-3


def test_stage_guidance_takes_two_or_four_scales():
    assert stage_guidance((5, 2)) == (Guidance(5, 2), Guidance(5, 2))
    assert stage_guidance([2, 1, 6, 1]) == (Guidance(2, 1), Guidance(6, 1))
    with pytest.raises(ValueError, match="2 or 4"):
        stage_guidance((5,))


def test_guidance_option_parses_two_or_four_numbers():
    assert parse_guidance("5,2") == (5.0, 2.0)
    assert parse_guidance("2,1,6,1.5") == (2.0, 1.0, 6.0, 1.5)
    for bad in ("2,1,6", "a,b", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="AUDIO,REF"):
            parse_guidance(bad)


def test_windows_stream_across_boundaries(tiny):
    plan = plan_frames(200, batches_per_window=1)
    assert len(plan.windows) == 2
    out = run(tiny, plan, frame_data(plan), SamplingOptions(clips_per_call=8, **FEW_STEPS))
    assert out.shape[0] == 200 and torch.isfinite(out).all()


def test_official_preset_8s_on_meta_device():
    """The released sizes, 512 px, 8 s at 25 fps (two keyframe batches, two windows): every shape flows
    through, nothing is allocated (shapes do not depend on the step count, so 3 steps per stage)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = KeySyncModel.from_preset("official", device="meta")
    plan = plan_frames(8 * 25)
    assert len(plan.windows) == 2
    data = frame_data(plan, latent=64, device="meta")
    out = run(model, plan, data, SamplingOptions(clips_per_call=64, **FEW_STEPS))
    assert out.shape == (200, 4, 64, 64) and out.is_meta
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 1024, f"peak RSS grew by {grown_mib:.0f} MiB (a real official model needs > 6 GiB)"


def test_half_precision_networks_sample_finite_latents(tiny):
    """sigma_max = 700 squares to inf in float16: the sampler must keep its state in float32."""
    plan = plan_frames(15)
    data = frame_data(plan)
    full = run(tiny, plan, data, SamplingOptions(seed=2, **FEW_STEPS))
    half_model = copy.deepcopy(tiny).to(torch.float16)
    half_data = FrameData(0, *(t.to(torch.float16) for t in (data.latents, data.masks, data.keyframe_audio, data.interpolation_audio)))
    half = run(half_model, plan, half_data, SamplingOptions(seed=2, **FEW_STEPS))
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    assert (half.float() - full).abs().mean() < 0.02 * full.abs().mean()


def count_rows(net):
    """Frame-evaluations of ``net``: rows of every batch it is called on."""
    seen = []
    net.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    return seen


@pytest.mark.parametrize("speed", ["quality", "fast", "fastest"])
def test_speed_presets_spend_the_evaluations_they_promise(tiny, speed):
    """A 157-frame timeline (one full keyframe batch, 12 segments): the networks are called on exactly the
    rows the schedule says (guided steps x3 variants, plain steps x1), which is what
    ``evaluations_per_output_frame`` counts for a long video (to 2 %); fast spends at most 15 per output frame."""
    from keysync.diffusion.speed import evaluations_per_output_frame, stage_schedules

    model = copy.deepcopy(tiny).to("meta")  # shapes only: counting rows needs no arithmetic
    keyframe_rows, interpolation_rows = count_rows(model.keyframe), count_rows(model.interpolation)
    plan = plan_frames(157)
    keyframe, interpolation = stage_schedules(speed)
    run(model, plan, frame_data(plan, device="meta"), SamplingOptions(keyframe_schedule=keyframe, interpolation_schedule=interpolation, clips_per_call=64))
    batches, segments = sum(len(w.batches) for w in plan.windows), len(plan.segments)
    assert sum(keyframe_rows) == batches * CLIP * keyframe.evaluations_per_clip_frame()
    assert sum(interpolation_rows) == segments * CLIP * interpolation.evaluations_per_clip_frame()
    calls = [stop - first for w in plan.windows for first, stop in  # one call per window, the last clip of the last on its own
             LatentDubber(model, SamplingOptions(clips_per_call=64)).clip_groups(len(w.segments), drain=w is plan.windows[-1])]
    assert calls == [len(w.segments) for w in plan.windows[:-1]] + [len(plan.windows[-1].segments) - 1, 1]
    guided_first = [rows for clips in calls for rows in
                    [3 * CLIP * clips] * interpolation.guided + [CLIP * clips] * (interpolation.steps - interpolation.guided)]
    assert interpolation_rows == guided_first  # each call's guided steps come first, at high noise
    per_frame = (sum(keyframe_rows) + sum(interpolation_rows)) / 157
    assert per_frame == pytest.approx(evaluations_per_output_frame(keyframe, interpolation), rel=0.02)
    assert per_frame <= {"quality": 41, "fast": 15, "fastest": 8}[speed]


def test_steps_replace_the_presets_step_counts():
    from keysync.diffusion.speed import StageSchedule, stage_schedules

    assert stage_schedules("quality", 4) == (StageSchedule(4, 4), StageSchedule(4, 4))  # every step guided, as before presets
    assert stage_schedules("fast", 4) == (StageSchedule(4, 4), StageSchedule(4, 3))
    assert stage_schedules("fastest", 4) == (StageSchedule(4, 2), StageSchedule(4, 1))
    assert stage_schedules("fast", 2) == (StageSchedule(2, 2), StageSchedule(2, 2))  # guided share capped at the steps
    with pytest.raises(ValueError, match="unknown speed 'turbo'"):
        stage_schedules("turbo")


def test_window_parts_stream_the_window_a_group_of_segments_at_a_time(tiny):
    """A window's frames come a group of ``clips_per_call`` segments at a time, each as soon as it is
    sampled (the network has not yet run for the later groups), and together they are ``window``'s."""
    plan = plan_frames(60)  # one window: one keyframe batch, 5 segments
    data = frame_data(plan)
    options = SamplingOptions(**FEW_STEPS, clips_per_call=2)
    anchor = FrameData(0, data.latents[:1], data.masks[:1], data.keyframe_audio[:1], data.interpolation_audio[:1])
    whole, last = LatentDubber(tiny, options).window(plan, 0, data, anchor, None)

    calls = []
    hook = tiny.interpolation.register_forward_hook(lambda *args: calls.append(1))
    try:
        result = LatentDubber(tiny, options).window_parts(plan, 0, data, anchor, None)
        parts, counted = [], []
        for part in result.parts:
            parts.append(part)
            counted.append(len(calls))
    finally:
        hook.remove()
    segments = len(plan.windows[0].segments)
    assert segments == 5 and [len(p) for p in parts] == [26, 26, 8]  # 13 frames per segment; the last stops at frame 59
    assert counted == [3, 6, 9]  # 3 steps (each one call) per group: a group's frames come before the next group runs
    assert torch.equal(torch.cat(parts), whole) and torch.equal(result.last_keyframe, last)
