"""The training recipe: official shapes on the meta device, freezing, dropout, and that it learns."""

import numpy as np
import pytest
import torch

from keysync.audio import frame_windows
from keysync.models import KeySyncModel
from keysync.train import Recipe, diffusion_loss, freeze_temporal_layers, make_optimizer, sample_sigmas, training_step

from .micro import micro_model


def batch_for(stage, clips=1, latent=64, feat=768, pixels=512, device="cpu", seed=0, channels=4):
    g = torch.Generator().manual_seed(seed)

    def make(*shape):
        return torch.empty(*shape, device="meta") if device == "meta" else torch.randn(*shape, generator=g)

    masks = torch.zeros(clips * 14, 1, latent, latent, device=device)
    masks[:, :, latent // 2 :] = 1
    cond = make(clips, channels, latent, latent) if stage == "keyframe" else make(clips, channels, 2, latent, latent)
    return dict(latents=make(clips * 14, channels, latent, latent), masks=masks, audio=make(clips, 14, 2, feat), cond=cond,
                pixels=make(clips * 14, 3, pixels, pixels))


@pytest.mark.parametrize("stage", ["keyframe", "interpolation"])
def test_official_training_step_on_meta_device(stage):
    model = KeySyncModel.from_preset("official", device="meta")
    model.vae.requires_grad_(False)
    net = getattr(model, stage)
    assert freeze_temporal_layers(net) == 656_076_838  # SVD's temporal layers (reference 2.9)
    optimizer, schedule = make_optimizer(net, Recipe())
    out = training_step(model, stage, batch_for(stage, device="meta"), optimizer, schedule, Recipe())
    assert out["diffusion"].is_meta and (("pixel" in out) == (stage == "keyframe"))
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert all(p.grad is not None and p.grad.shape == p.shape for p in trainable)
    assert all(p.grad is None for p in net.parameters() if not p.requires_grad)


def test_sigma_distribution_and_warmup():
    sigmas = sample_sigmas(20000, 14, Recipe(), torch.Generator().manual_seed(0))
    log = sigmas.view(-1, 14)[:, 0].log()
    assert torch.all(sigmas.view(-1, 14) == sigmas.view(-1, 14)[:, :1])  # one sigma per clip
    assert abs(log.mean().item() - 1.0) < 0.03 and abs(log.std().item() - 1.2) < 0.03
    net = torch.nn.Linear(2, 2)
    optimizer, schedule = make_optimizer(net, Recipe(lr=1e-3, warmup_steps=10))
    lrs = []
    for _ in range(15):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[0] == pytest.approx(1e-9) and lrs[5] == pytest.approx(5e-4, rel=1e-3) and lrs[12] == pytest.approx(1e-3)
    optimizer, schedule = make_optimizer(net, Recipe(lr=1e-3, warmup_steps=10, decay_steps=30))
    lrs = []
    for _ in range(35):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[10] == pytest.approx(1e-3) and lrs[20] == pytest.approx(5e-4) and lrs[30] == lrs[34] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def micro():
    model = micro_model()
    model.vae.requires_grad_(False)
    return model


def test_loss_is_zero_outside_the_mask_and_dropout_reaches_the_network():
    model = micro()
    batch = batch_for("keyframe", clips=4, latent=8, feat=40, pixels=32)
    seen = {}
    forward = model.keyframe.forward

    def spy(x, c_noise, concat, context):
        seen["concat"], seen["context"] = concat, context
        return forward(x, c_noise, concat, context)

    model.keyframe.forward = spy
    recipe = Recipe(drop_reference=0.5, drop_audio=0.5)
    diffusion_loss(model.keyframe, batch, recipe, torch.Generator().manual_seed(1))
    per_frame = seen["concat"].flatten(1).abs().sum(1) == 0
    assert seen["concat"].shape[0] == 56 and 0 < per_frame.sum() < 56  # the reference is dropped frame by frame
    with torch.no_grad():
        full = model.keyframe.embed_audio(batch["audio"])
    dropped = [bool((c == 0).all()) for c in seen["context"]]
    assert any(dropped) and not all(dropped)  # audio is dropped per clip, after the projection
    assert all(d or torch.equal(c, f) for d, c, f in zip(dropped, seen["context"].detach(), full))


@pytest.mark.parametrize("stage", ["keyframe", "interpolation"])
def test_a_few_steps_fit_a_fixed_batch(stage):
    model = micro()
    batch = batch_for(stage, clips=1, latent=8, feat=40, pixels=32)
    recipe = Recipe(lr=2e-3, warmup_steps=1, drop_audio=0.0, drop_reference=0.0, pixel_loss_weight=0.0)
    optimizer, schedule = make_optimizer(getattr(model, stage), recipe)
    losses = []
    for _ in range(30):
        out = training_step(model, stage, batch, optimizer, schedule, recipe, torch.Generator().manual_seed(0))  # the same noise every step
        losses.append(out["loss"])
    assert sum(losses[-3:]) < 0.5 * sum(losses[:3])


def fixed_batches(stage):
    def batches(step):
        return batch_for(stage, clips=1, latent=8, feat=40, pixels=32, seed=step % 4)

    return batches


@pytest.mark.parametrize("stage", ["keyframe"])
def test_resumed_run_continues_the_same_loss_curve(tmp_path, stage, caplog):
    from keysync.train import TrainConfig, train

    recipe = Recipe(lr=1e-3, warmup_steps=2)
    whole = train(micro(), TrainConfig(stage, str(tmp_path / "a"), steps=6, checkpoint_every=3, recipe=recipe),
                  fixed_batches(stage))
    first = train(micro(), TrainConfig(stage, str(tmp_path / "b"), steps=3, checkpoint_every=3, recipe=recipe),
                  fixed_batches(stage))
    with (tmp_path / "b" / stage / "log.csv").open("a") as log_file:  # killed after logging steps 4 and 5, before their checkpoint
        log_file.write("4,0.5,0.5,0.0,0.001\n5,0.5,0.5,0.0,0.001\n")
    with caplog.at_level("INFO", logger="keysync.train.trainer"):
        rest = train(micro(), TrainConfig(stage, str(tmp_path / "b"), steps=6, checkpoint_every=3, recipe=recipe),
                     fixed_batches(stage))
    assert any("resumed" in line for line in caplog.messages)
    assert len(first) == 3 and len(rest) == 3
    assert first + rest == pytest.approx(whole, rel=1e-5)
    assert whole[3] != pytest.approx(whole[0], rel=1e-3)  # the curve moves: resuming from scratch would differ
    rows = (tmp_path / "b" / stage / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss") and [int(r.split(",")[0]) for r in rows[1:]] == [1, 2, 3, 4, 5, 6]


def test_one_process_can_train_at_two_precisions(tmp_path):
    """accelerate refuses a second Accelerator with another precision in one process; train() lets it."""
    from keysync.train import TrainConfig, train

    def run(name, precision):
        config = TrainConfig("keyframe", str(tmp_path / name), steps=2, checkpoint_every=2, mixed_precision=precision,
                             recipe=Recipe(lr=1e-3, warmup_steps=1))
        return train(micro(), config, fixed_batches("keyframe"))

    full = run("a", "no")
    half = run("b", "bf16")
    again = run("c", "no")
    assert half == pytest.approx(full, rel=1e-2) and half != full  # bf16 autocast ran
    assert again == full  # and the second fp32 run is fp32 again


def smooth_frames(n=4, size=32, seed=0):
    """Frames with smooth colour ramps and one soft blob: in [-1, 1], (1, n, 3, size, size)."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    frames = []
    for t in range(n):
        colour = torch.rand(3, 1, 1, generator=g) * 1.2 - 0.6
        blob = torch.exp(-((x - 0.1 * t) ** 2 + y**2) * 8)
        frames.append((colour + 0.3 * x + 0.3 * blob).clamp(-1, 1))
    return torch.stack(frames)[None]


def test_rgb_skip_vae_starts_as_a_thumbnail_codec():
    from keysync.models.vae import KeySyncVAE

    vae = KeySyncVAE(block_out_channels=(32, 32), layers_per_block=1, sample_size=32, rgb_skip=True,
                     down_block_types=("DownEncoderBlock2D",) * 2)
    pixels = smooth_frames()[0]
    with torch.no_grad():
        z = vae.encode(pixels).latent_dist.mode()
        assert torch.allclose(z[:, :3], torch.nn.functional.avg_pool2d(pixels, 2))
        decoded = vae.decode(z, num_frames=4).sample
    assert (decoded - pixels).abs().mean() < 0.02  # bilinear upsampling of the thumbnail, before any training
    plain = KeySyncVAE(block_out_channels=(32, 32), layers_per_block=1, sample_size=32, down_block_types=("DownEncoderBlock2D",) * 2)
    with torch.no_grad():
        assert (plain.decode(plain.encode(pixels).latent_dist.mode(), num_frames=4).sample - pixels).abs().mean() > 0.1


def test_small_128_preset_doubles_the_crop_and_keeps_the_networks_latents():
    small, wide = KeySyncModel.from_preset("small"), KeySyncModel.from_preset("small-128")
    assert (small.crop_size, wide.crop_size) == (64, 128)
    assert wide.keyframe.config.latent_size == small.keyframe.config.latent_size == 16
    pixels = torch.nn.functional.interpolate(smooth_frames()[0], size=128, mode="bilinear")
    with torch.no_grad():
        z = wide.vae.encode(pixels).latent_dist.mode()
    assert z.shape == (4, 8, 16, 16)  # 8 channels: more detail per latent pixel
    assert torch.allclose(z[:, :3], torch.nn.functional.avg_pool2d(pixels, 8))  # the same 16x16 image as small's


def test_vae_stage_learns_and_calibrates_its_latent_scale():
    from keysync.train.recipe import calibrate_latent_scale

    model = micro()
    model.vae.requires_grad_(True)
    batch = {"pixels": smooth_frames(seed=1)}
    recipe = Recipe(lr=2e-3, warmup_steps=1)
    optimizer, schedule = make_optimizer(model.vae, recipe)
    losses = [training_step(model, "vae", batch, optimizer, schedule, recipe)["loss"] for _ in range(25)]
    assert sum(losses[-3:]) < 0.7 * sum(losses[:3])
    scale = calibrate_latent_scale(model.vae.eval(), batch["pixels"][0])
    assert model.vae.config.scaling_factor == scale
    with torch.no_grad():
        assert abs(float(model.vae.encode_frames(batch["pixels"][0]).std()) - 1) < 1e-3


def test_a_kept_latent_scale_gives_each_learned_channel_unit_variance_and_the_same_codec():
    from keysync.models.vae import KeySyncVAE
    from keysync.train.recipe import calibrate_latent_scale

    torch.manual_seed(0)
    vae = KeySyncVAE(block_out_channels=(32, 32), layers_per_block=1, sample_size=32, rgb_skip=True, latent_channels=8,
                     down_block_types=("DownEncoderBlock2D",) * 2).eval()
    torch.nn.init.normal_(vae.decoder.time_conv_out.weight, std=0.1)  # a decoder that reads the learned channels
    pixels = smooth_frames(seed=2)[0]
    with torch.no_grad():
        before = vae.encode(pixels).latent_dist
        decoded = vae.decode(before.mode(), num_frames=4).sample
    assert calibrate_latent_scale(vae, pixels, scale=2.5) == 2.5 == vae.config.scaling_factor
    with torch.no_grad():
        after = vae.encode(pixels).latent_dist
        scaled = vae.encode_frames(pixels)
        assert torch.allclose(vae.decode(after.mode(), num_frames=4).sample, decoded, atol=1e-5)
    assert torch.equal(after.mode()[:, :3], before.mode()[:, :3])  # the thumbnail, as another VAE scaled 2.5 gives it
    assert torch.allclose(scaled[:, 3:].std(dim=(0, 2, 3)), torch.ones(5), atol=1e-4)
    ratio = after.mode()[:, 3:] / before.mode()[:, 3:]
    assert torch.allclose(after.std[:, 3:] / before.std[:, 3:], ratio, rtol=1e-3)  # the posterior scales as a whole
    with pytest.raises(ValueError, match="thumbnail"):
        vae.rescale_latent_channels(torch.full((8,), 2.0))


def test_lip_weight_scales_the_loss_on_the_lips_only():
    model = micro()
    batch = batch_for("interpolation", clips=1, latent=8, feat=40, pixels=32)
    off = diffusion_loss(model.interpolation, batch, Recipe(), torch.Generator().manual_seed(3))[0]
    on_nowhere = diffusion_loss(model.interpolation, {**batch, "lips": torch.zeros(14, 1, 8, 8)}, Recipe(lip_weight=3.0), torch.Generator().manual_seed(3))[0]
    on_everywhere = diffusion_loss(model.interpolation, {**batch, "lips": torch.ones(14, 1, 8, 8)}, Recipe(lip_weight=3.0), torch.Generator().manual_seed(3))[0]
    assert torch.allclose(on_nowhere, off) and torch.allclose(on_everywhere, 4 * off, rtol=1e-5)


def test_widening_the_audio_window_keeps_the_output_then_lets_neighbours_in():
    net = micro().keyframe
    feats = torch.randn(20, 2, 40)
    before = net.embed_audio(feats[None, 3:17])
    net.widen_audio_window(2)
    windows = frame_windows(feats, 2)
    assert net.config.audio_window == 2 and net.audio_proj.in_features == 5 * 40
    assert torch.allclose(net.embed_audio(windows[None, 3:17]), before, atol=1e-6)
    louder = windows.clone()
    louder[:, 8:] += 1  # the frame two ahead
    assert torch.allclose(net.embed_audio(louder[None, 3:17]), before, atol=1e-6)  # its weights start at zero
    batch = batch_for("keyframe", clips=1, latent=8, feat=40, pixels=32)
    batch["audio"] = windows[None, 3:17]
    diffusion_loss(net, batch, Recipe(drop_audio=0.0), torch.Generator().manual_seed(0))[0].backward()
    assert net.audio_proj.weight.grad[:, 4 * 40 :].abs().sum() > 0  # ... and they learn
    with pytest.raises(ValueError, match="narrow"):
        net.widen_audio_window(1)


@pytest.mark.parametrize("stage", ["keyframe", "interpolation"])
def test_widening_the_latent_channels_keeps_the_output_then_lets_the_new_ones_learn(stage):
    """A network trained on a 4-channel VAE starts a model whose VAE has 8 (the small-128 preset)."""
    net = getattr(micro(), stage).eval()
    narrow, wide = batch_for(stage, latent=8, feat=40, pixels=32), batch_for(stage, latent=8, feat=40, pixels=32, seed=1, channels=8)
    for key in ("latents", "cond"):
        wide[key][:, :4] = narrow[key]
    x, c_noise, context = narrow["latents"], torch.full((14,), 0.3), net.embed_audio(narrow["audio"])
    with torch.no_grad():
        before = net(x, c_noise, net.embed_frames(narrow["cond"]), context)
        net.widen_latent_channels(8)
        after = net(wide["latents"], c_noise, net.embed_frames(wide["cond"]), context)
    assert net.config.latent_channels == 8 and after.shape == (14, 8, 8, 8)
    assert torch.allclose(after[:, :4], before, atol=1e-5)  # the new inputs start unheard
    assert after[:, 4:].abs().max() == 0  # and the new outputs silent
    diffusion_loss(net.train(), wide, Recipe(), torch.Generator().manual_seed(0))[0].backward()
    assert net.unet.conv_out.weight.grad[4:].abs().sum() > 0 and net.unet.conv_in.weight.grad[:, 4:8].abs().sum() > 0
    with pytest.raises(ValueError, match="narrow"):
        net.widen_latent_channels(4)


def test_keyframe_copy_keeps_the_output_then_gives_each_frame_its_nearer_keyframe():
    """Turning keyframe_copy on for a trained interpolation network changes nothing until it learns to use the
    new channels; they carry the start keyframe to the first half of the frames and the end one to the rest."""
    net = micro().interpolation.eval()
    batch = batch_for("interpolation", latent=8, feat=40, pixels=32)
    x, c_noise, context = batch["latents"], torch.full((14,), 0.3), net.embed_audio(batch["audio"])
    concat = net.embed_frames(batch["cond"])
    with torch.no_grad():
        before = net(x, c_noise, concat, context)
        net.add_keyframe_copy()
        after = net(x, c_noise, concat, context)
    assert net.config.keyframe_copy and net.unet.conv_in.in_channels == 3 * 4 + 1
    assert torch.allclose(after, before, atol=1e-6)
    frames = net.conditioning_frames(concat, 14)
    start, end = concat[0, :4], concat[0, 4:]
    assert all(torch.equal(frames[t, 5:], start if t < 7 else end) for t in range(14))
    assert torch.equal(frames[3, :4], net.learned_mask) and torch.equal(frames[0, :4], start)  # the official channels stay
    diffusion_loss(net.train(), batch, Recipe(drop_reference=0.0), torch.Generator().manual_seed(0))[0].backward()
    assert net.unet.conv_in.weight.grad[:, 9:].abs().sum() > 0  # and learns to use them
    net.eval().widen_latent_channels(8)  # a wider VAE: each input group keeps its weights
    wide = batch_for("interpolation", latent=8, feat=40, pixels=32, seed=1, channels=8)
    for key in ("latents", "cond"):
        wide[key][:, :4] = batch[key]
    with torch.no_grad():
        widened = net(wide["latents"], c_noise, net.embed_frames(wide["cond"]), context)
    assert net.unet.conv_in.in_channels == 3 * 8 + 1
    assert torch.allclose(widened[:, :4], after, atol=1e-5)  # (backward alone moved no weight)
    with pytest.raises(ValueError, match="interpolation"):
        micro().keyframe.add_keyframe_copy()


def test_audio_mlp_starts_silent_survives_a_save_and_cannot_be_widened_after(tmp_path):
    model = micro()
    net = model.keyframe
    feats = torch.randn(1, 14, 2, 40)
    before = net.embed_audio(feats)
    assert net.add_audio_mlp(16) and not net.add_audio_mlp(16)
    assert torch.equal(net.embed_audio(feats), before)  # its output layer starts at zero
    with torch.no_grad():
        net.audio_mlp[-1].bias.add_(1.0)
    moved = net.embed_audio(feats)
    assert not torch.allclose(moved, before)
    model.save_pretrained(tmp_path / "m")
    loaded = KeySyncModel.from_pretrained(tmp_path / "m").keyframe
    assert loaded.config.audio_mlp_width == 16 and torch.allclose(loaded.embed_audio(feats), moved)
    with pytest.raises(ValueError, match="audio MLP"):
        net.widen_audio_window(1)
    with pytest.raises(ValueError, match="16 wide"):
        net.add_audio_mlp(32)


def _jaw_read_out(net, shards, jaw) -> float:
    """Mean held-out (last 4 shards) correlation of a ridge read-out of the jaw drop from the audio tokens."""
    from keysync.bench.metrics import pearson

    tokens = [net.embed_audio(s["audio_keyframe"][None])[0].double() for s in shards]
    fit_x, fit_y = torch.cat(tokens[:-4]), torch.cat(jaw[:-4]).double()
    mean = fit_x.mean(0)
    gram = (fit_x - mean).T @ (fit_x - mean) + 1e-3 * torch.eye(fit_x.shape[1], dtype=torch.float64)
    coef = torch.linalg.solve(gram, (fit_x - mean).T @ (fit_y - fit_y.mean()))
    return float(np.mean([pearson(((t - mean) @ coef).numpy(), j.numpy()) for t, j in zip(tokens[-4:], jaw[-4:])]))


@pytest.mark.parametrize("target", ["landmarks", "mouth"])
def test_audio_mlp_pretraining_learns_the_jaw_and_puts_it_in_the_tokens(target, caplog):
    """Shards whose jaw drops by a nonlinear function of the audio, seen in the landmarks' chin or in the
    mouth parameters (the first: the opening; the landmarks then hold no motion): after pretraining, the
    held-out clips' jaw drop is predicted from their audio, and read from the network's tokens better than
    before (not perfectly: a linear read-out cannot cancel the rest of the projection's tokens)."""
    from keysync.train.audio_mlp import pretrain_audio_mlp

    g = torch.Generator().manual_seed(0)
    direction, others = torch.randn(40, generator=g), torch.randn(40, 4, generator=g)
    shards, jaw = [], []
    for _ in range(20):
        audio = 2 * torch.randn(60, 2, 40, generator=g) + 1
        drop = torch.tanh(audio.mean(1) @ direction / 10) ** 2
        landmarks = (64 + 10 * torch.randn(68, 2, generator=g)).expand(60, 68, 2).clone()
        shard = {"audio_keyframe": audio, "landmarks": landmarks, "present": torch.ones(60, dtype=torch.uint8)}
        if target == "mouth":
            shard["mouth"] = torch.cat([drop[:, None], torch.tanh(audio.mean(1) @ others / 10)], dim=1)  # width, rounding...
        else:
            landmarks[:, 8, 1] += 6 * drop
        shards.append(shard)
        jaw.append(drop)
    net = micro().keyframe
    net.add_audio_mlp(64)
    with torch.no_grad():
        before = _jaw_read_out(net, shards, jaw)
    with caplog.at_level("INFO", logger="keysync.train.audio_mlp"):
        score = pretrain_audio_mlp(net, shards, "keyframe", steps=600, seed=0)
    assert f"on {'mouth parameters' if target == 'mouth' else 'landmarks'}" in caplog.messages[-2]
    assert score > 0.85  # a linear map of the same audio: about 0.2
    with torch.no_grad():
        after = _jaw_read_out(net, shards, jaw)
    assert before < 0.5 and after > before + 0.15, (before, after)  # about 0.4 -> 0.6; a zero output layer: no change
