"""benchmarks/speed.py's real-network mode counts what it reports: network evaluations, FLOPs (on a meta
copy of the model) and time per part of the model work."""

import sys
from pathlib import Path

import pytest
import torch

from keysync.diffusion.speed import stage_schedules
from keysync.models import KeySyncModel
from keysync.pipeline.plan import CLIP, plan_frames
from keysync.pipeline.sampling import LatentDubber, SamplingOptions
from tests.micro import micro_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import speed  # noqa: E402


def dubber_for(model, preset: str, steps: int) -> LatentDubber:
    keyframe, interpolation = stage_schedules(preset, steps)
    return LatentDubber(model, SamplingOptions(keyframe_schedule=keyframe, interpolation_schedule=interpolation, clips_per_call=2))


def test_an_official_frame_evaluation_counts_1_315_tflop():
    """The official networks on one 14-frame clip: sampling FLOPs per network frame-evaluation are the
    1.315 TFLOP the speed issue counted on its own (keyframe and interpolation alike; the audio and frame
    embeddings add under 0.1 %), counted on meta tensors: one guided step per stage."""
    model = KeySyncModel.from_preset("official", device="meta")
    flops, evaluations = speed.count_flops(model, dubber_for(model, "quality", 1), 14, 14)
    keyframe, interpolation = stage_schedules("quality", 1)
    assert evaluations == {"keyframe": CLIP * keyframe.evaluations_per_clip_frame(), "interpolation": CLIP * interpolation.evaluations_per_clip_frame()}
    assert flops["sampling"] / sum(evaluations.values()) == pytest.approx(1.315e12, rel=1e-3)
    assert flops["decode"] > flops["encode"] > 0


def test_model_work_times_each_part_and_runs_the_schedule():
    """The micro model for real on 27 frames (a keyframe batch, two segments) at ``fast`` cut to 3 steps
    (interpolation: 2 guided, 1 plain): every part is timed, the networks see exactly the rows the schedule
    promises, the VAE decodes every output frame once in the dub's 14-frame groups, and counting FLOPs on a
    meta copy neither touches the model nor counts differently."""
    model = micro_model(audio_window=1)
    dubber = dubber_for(model, "fast", 3)
    seconds, decoded = {}, []
    timed = speed.timed_parts(seconds, lambda: None)

    def run(part, fn, *args):
        if part == "decode":
            decoded.append(len(args[0]))
        return timed(part, fn, *args)

    evaluations = speed.model_work(model, dubber, 27, 14, torch.device("cpu"), torch.float32, run)
    plan = plan_frames(27)
    keyframe, interpolation = stage_schedules("fast", 3)
    batches = sum(len(w.batches) for w in plan.windows)
    assert evaluations == {"keyframe": batches * CLIP * keyframe.evaluations_per_clip_frame(),
                           "interpolation": len(plan.segments) * CLIP * interpolation.evaluations_per_clip_frame()}
    assert set(seconds) == {"encode", "sampling", "decode"} and min(seconds.values()) > 0
    assert decoded == [14, 13]
    before = {k: v.clone() for k, v in model.keyframe.state_dict().items()}
    flops, counted = speed.count_flops(model, dubber, 27, 14)
    assert counted == evaluations and min(flops.values()) > 0
    after = model.keyframe.state_dict()
    assert all(after[k].device.type == "cpu" and torch.equal(after[k], v) for k, v in before.items())


def test_deep_cache_flops_count_only_the_full_resolution_level_on_reusing_steps():
    """At official size, with --deep-cache 2 at ``quality`` cut to 2 steps (whole, then reuse) the networks
    are called on the same rows, and a reusing evaluation costs 36.8 % of the 1.315 TFLOP of a whole one
    (its full-resolution level: the input convolution, the first down block, the last up block)."""
    model = KeySyncModel.from_preset("official", device="meta")
    keyframe, interpolation = stage_schedules("quality", 2, deep_cache=2)
    cached = LatentDubber(model, SamplingOptions(keyframe_schedule=keyframe, interpolation_schedule=interpolation, clips_per_call=2))
    flops, evaluations = speed.count_flops(model, cached, 14, 14)
    assert evaluations == {"keyframe": CLIP * 6, "interpolation": CLIP * 6}  # 2 guided steps, 3 variants each
    whole = sum(evaluations.values()) / 2  # the first step's
    assert flops["sampling"] == pytest.approx(whole * 1.315e12 * (1 + 0.368), rel=2e-3)
