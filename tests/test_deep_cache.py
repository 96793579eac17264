"""DeepCache (``--deep-cache N``): the deep levels run on one sampling step in N, the steps between reuse them."""

import copy

import pytest
import torch

from keysync.diffusion.denoiser import DeepFeatures
from keysync.diffusion.speed import StageSchedule, evaluations_per_output_frame, stage_schedules
from keysync.errors import KeySyncError
from keysync.models import KeySyncModel
from keysync.pipeline.plan import CLIP, plan_frames
from keysync.pipeline.sampling import SamplingOptions

from tests.test_pipeline_sampling import frame_data, run


@pytest.fixture(scope="module")
def two_levels():
    """Two UNet levels on 8x8 latents (random weights): a deep level for the cache to skip."""
    torch.manual_seed(0)
    net = dict(latent_size=8, model_channels=32, channel_mult=(1, 2), attention_levels=(0, 1), num_head_channels=16,
               context_dim=32, audio_feature_dim=768)
    vae = dict(block_out_channels=(32,), layers_per_block=1, down_block_types=("DownEncoderBlock2D",))
    return KeySyncModel.from_config(net, vae).eval()


def test_deep_steps_run_whole_every_nth_step_and_where_guidance_stops():
    assert StageSchedule(11, 11, 2).deep_steps() == [i % 2 == 0 for i in range(11)]
    assert StageSchedule(7, 7, 3).deep_steps() == [True, False, False, True, False, False, True]
    # the kept features are of the three guidance variants: the first plain step runs whole
    assert StageSchedule(3, 1, 2).deep_steps() == [True, True, False]
    assert StageSchedule(5, 2, 2).deep_steps() == [True, False, True, False, True]
    assert StageSchedule(5, 2).deep_steps() == [True] * 5
    assert StageSchedule(4, 3, 2).deep_steps() == [True, False, True, True]
    assert stage_schedules("fast", None, 2) == (StageSchedule(11, 11, 2), StageSchedule(4, 3, 2))
    # fast@2: keyframes whole on 6 of 11 guided steps (x3), interpolation on steps 0 and 2 (guided, x3) and 3
    assert evaluations_per_output_frame(*stage_schedules("fast", None, 2), whole_only=True) == pytest.approx(14 * 18 / 169 + 14 * 7 / 13)
    assert evaluations_per_output_frame(*stage_schedules("fast", None, 2)) == evaluations_per_output_frame(*stage_schedules("fast"))
    with pytest.raises(ValueError, match="deep_cache 0"):
        stage_schedules("fast", None, 0)


def test_reusing_the_deep_features_of_the_same_input_gives_the_whole_networks_output(two_levels):
    """Reuse runs the first down block and the last up block on the kept features: on the input they were
    kept from it gives the whole network's output bit for bit, without running the deep blocks; on
    another input it differs from the whole network's (the deep features are not recomputed)."""
    net = two_levels.interpolation
    calls = []
    net.unet.mid_block.register_forward_hook(lambda *args: calls.append(1))
    frames, channels = CLIP, net.unet.conv_in.in_channels
    x, t, context = torch.randn(frames, channels, 8, 8), torch.randn(frames), torch.randn(1, frames, 32)
    with torch.no_grad():
        whole = net.unet_forward(x, t, context)
        deep = DeepFeatures()
        assert torch.equal(net.unet_forward(x, t, context, deep), whole)
        assert deep.features.shape == (frames, 64, 8, 8)  # what the last up block takes in: the deep level's output, upsampled
        deep.reuse = True
        assert len(calls) == 2
        assert torch.equal(net.unet_forward(x, t, context, deep), whole)
        assert len(calls) == 2
        other = torch.randn_like(x)
        assert not torch.allclose(net.unet_forward(other, t, context, deep), net.unet_forward(other, t, context), atol=1e-3)


def test_sampling_with_deep_cache_runs_the_deep_levels_only_on_its_whole_steps(two_levels):
    model = copy.deepcopy(two_levels)
    deep_rows = []
    model.interpolation.unet.mid_block.register_forward_pre_hook(lambda module, args, kwargs: deep_rows.append(kwargs["hidden_states"].shape[0]),
                                                                 with_kwargs=True)
    plan = plan_frames(40)  # three segments: a call of two, then the last on its own (``clip_groups``)
    data = frame_data(plan)
    keyframe = StageSchedule(2, 2)
    plain = run(model, plan, data, SamplingOptions(keyframe_schedule=keyframe, interpolation_schedule=StageSchedule(5, 2), clips_per_call=2))
    assert deep_rows == [3 * 2 * CLIP] * 2 + [2 * CLIP] * 3 + [3 * CLIP] * 2 + [CLIP] * 3
    deep_rows.clear()
    cached = run(model, plan, data, SamplingOptions(keyframe_schedule=keyframe, interpolation_schedule=StageSchedule(5, 2, 2), clips_per_call=2))
    assert deep_rows == [3 * 2 * CLIP, 2 * CLIP, 2 * CLIP, 3 * CLIP, CLIP, CLIP]  # steps 0 (guided), 2 and 4 of each call
    assert cached.shape == plain.shape and torch.isfinite(cached).all()
    assert torch.equal(cached[[0, 13, 26, 39]], plain[[0, 13, 26, 39]])  # the keyframes: their stage ran whole both times
    assert not torch.allclose(cached, plain)


def test_dub_refuses_a_deep_cache_below_one():
    from keysync.pipeline.dub import KeySyncPipeline
    from tests.micro import micro_model

    pipe = KeySyncPipeline(micro_model())
    frames = torch.zeros(4, 32, 32, 3, dtype=torch.uint8).numpy()
    with pytest.raises(KeySyncError, match="--deep-cache 0"):
        pipe(frames, torch.zeros(1600).numpy(), fps=25, deep_cache=0, progress=False)
