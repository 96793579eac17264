"""keysync prepare + keysync train on a real-face clip with a tiny random model (plumbing)."""

import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from keysync.cli import main
from keysync.media.video import probe_video
from keysync.models import KeySyncModel
from keysync.train.data import prepare

from .faces_media_clips import astronaut, moving_frames, write_clip
from .micro import micro_model


def test_prepare_then_train_and_resume(tmp_path, capsys):
    src = tmp_path / "videos"
    src.mkdir()
    t = np.arange(int(1.6 * 16000)) / 16000
    speech = (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    write_clip(src / "talk.mp4", moving_frames(astronaut(), 320, 240, 40, photo_height=220), rate=25, audio=speech)
    micro_model().save_pretrained(tmp_path / "model")

    shards = tmp_path / "shards"
    # crops first (no VAE trained yet), then latents added from the stored crops without re-tracking
    prepare(src, shards, KeySyncModel.from_pretrained(tmp_path / "model"), progress=False, latents=False)
    crops_only = load_file(shards / "talk.safetensors")
    assert "latents" not in crops_only and crops_only["pixels"].shape == (40, 3, 32, 32)
    run = tmp_path / "run"
    config = {"model": str(tmp_path / "model"), "data": str(shards), "output": str(run), "steps": 2,
              "checkpoint_every": 2, "lr": 1e-3, "warmup_steps": 1, "sample_every": 2, "audio_window": 1,
              "latent_scale": 1.5}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "keyframe", "--config", str(tmp_path / "train.yaml")]) == 1
    assert "train the VAE first" in capsys.readouterr().err
    assert main(["train", "vae", "--config", str(tmp_path / "train.yaml")]) == 0
    assert (run / "vae" / "log.csv").read_text().startswith("step,loss,l1,edge,lr")
    assert KeySyncModel.from_pretrained(run / "model").vae.config.scaling_factor == 1.5  # kept, not calibrated

    assert main(["prepare", str(src), str(shards), "--model", str(run / "model")]) == 0  # the trained VAE
    shard = load_file(shards / "talk.safetensors")
    assert torch.equal(shard["pixels"], crops_only["pixels"])
    assert shard["latents"].shape == (40, 4, 8, 8) and shard["pixels"].shape == (40, 3, 32, 32)
    assert shard["audio_keyframe"].shape == (40, 2, 40) and shard["present"].all()
    stamp = (shards / "talk.safetensors").stat().st_mtime_ns
    assert main(["prepare", str(src), str(shards), "--model", str(run / "model")]) == 0  # resumes: nothing redone
    assert (shards / "talk.safetensors").stat().st_mtime_ns == stamp

    for stage in ("keyframe", "interpolation"):
        assert main(["train", stage, "--config", str(tmp_path / "train.yaml")]) == 0
    assert (run / "model" / "keysync.json").is_file()
    trained = KeySyncModel.from_pretrained(run / "model")
    assert trained.keyframe.config.audio_window == 1 and trained.interpolation.audio_proj.in_features == 3 * 40
    for stage in ("vae", "keyframe", "interpolation"):  # sample videos: truth | output, zoomed x4
        info = probe_video(run / stage / "samples" / "step_00000002.mp4")
        assert (info.width, info.height, info.frame_count) == (256, 128, 4 if stage == "vae" else 14)
    marker = json.loads((run / "interpolation" / "checkpoints" / "latest.json").read_text())
    assert marker["step"] == 2
    config["steps"] = 3
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "interpolation", "--config", str(tmp_path / "train.yaml")]) == 0
    assert "resumed" in capsys.readouterr().err  # the log, on stderr

    # --export: the stage's latest checkpoint into the model folder, nothing trained
    model = KeySyncModel.from_pretrained(run / "model")
    with torch.no_grad():
        for p in model.keyframe.parameters():
            p.add_(1.0)  # the folder no longer holds the checkpoint's weights
    model.save_pretrained(run / "model", overwrite=True)
    assert main(["train", "keyframe", "--config", str(tmp_path / "train.yaml"), "--export"]) == 0
    assert "exported step 2" in capsys.readouterr().out
    saved = load_file(run / "keyframe" / "checkpoints" / "step_00000002" / "model.safetensors")
    exported = KeySyncModel.from_pretrained(run / "model").keyframe.state_dict()
    assert saved.keys() == exported.keys() and all(torch.equal(exported[k], saved[k]) for k in saved)
    assert not (run / "keyframe" / "checkpoints" / "step_00000003").exists()
    empty = f"output={tmp_path / 'empty-run'}"  # --set overrides the config's key
    assert main(["train", "keyframe", "--config", str(tmp_path / "train.yaml"), "--set", empty, "--export"]) == 1
    assert "no keyframe checkpoint" in capsys.readouterr().err

    # a later sitting: the run exported fp16, its latents re-encoded from that folder, training continues on them
    assert main(["export", str(run / "model"), "-o", str(tmp_path / "fp16"), "--dtype", "float16"]) == 0
    assert main(["prepare", str(src), str(shards), "--model", str(tmp_path / "fp16")]) == 0
    assert not torch.equal(load_file(shards / "talk.safetensors")["latents"], shard["latents"])  # re-encoded
    sitting = ["--set", f"model={tmp_path / 'fp16'}", "--set", f"output={tmp_path / 'sitting-2'}"]
    assert main(["train", "keyframe", "--config", str(tmp_path / "train.yaml"), *sitting]) == 0
    # an audio MLP added to the fp16 network: pretrained once, before the first step, and saved with it
    grown = [*sitting, "--set", f"output={tmp_path / 'sitting-mlp'}", "--set", "audio_mlp.width=16"]
    assert main(["train", "keyframe", "--config", str(tmp_path / "train.yaml"), *grown]) == 0
    assert "audio MLP pretraining step 3000/3000" in capsys.readouterr().err  # the log, on stderr
    assert KeySyncModel.from_pretrained(tmp_path / "sitting-mlp" / "model").keyframe.config.audio_mlp_width == 16
    shutil.rmtree(tmp_path / "sitting-mlp" / "model")  # as if stopped before its end: checkpoints only
    assert main(["train", "keyframe", "--config", str(tmp_path / "train.yaml"), *grown, "--set", "steps=4"]) == 0
    out = capsys.readouterr().err
    assert "resumed" in out and "audio MLP pretraining" not in out  # the checkpoint holds the trained MLP


def test_freeze_encoder_trains_the_decoder_alone_and_keeps_the_latents(tmp_path, capsys):
    src = tmp_path / "videos"
    src.mkdir()
    speech = (0.3 * np.sin(2 * np.pi * 200 * np.arange(int(0.48 * 16000)) / 16000)).astype(np.float32)
    write_clip(src / "talk.mp4", moving_frames(astronaut(), 320, 240, 12, photo_height=220), rate=25, audio=speech)
    micro_model().save_pretrained(tmp_path / "model")
    model = KeySyncModel.from_pretrained(tmp_path / "model")
    prepare(src, tmp_path / "shards", model, progress=False, latents=False)
    before = model.vae
    config = {"model": str(tmp_path / "model"), "data": str(tmp_path / "shards"), "output": str(tmp_path / "run"),
              "steps": 3, "checkpoint_every": 3, "lr": 1e-2, "warmup_steps": 1, "freeze_encoder": True}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "vae", "--config", str(tmp_path / "train.yaml")]) == 0
    after = KeySyncModel.from_pretrained(tmp_path / "run" / "model").vae
    old, new = before.state_dict(), after.state_dict()
    encoder = [k for k in old if k.startswith(("encoder.", "quant_conv."))]
    assert encoder and all(torch.equal(old[k], new[k]) for k in encoder)
    assert any(not torch.equal(old[k], new[k]) for k in old if k.startswith("decoder."))
    assert after.config.scaling_factor == before.config.scaling_factor  # not recalibrated
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(after.encode_frames(pixels), before.encode_frames(pixels))
    assert main(["train", "keyframe", "--config", str(tmp_path / "train.yaml")]) == 1
    assert "freeze_encoder is for the vae stage" in capsys.readouterr().err


def test_every_config_key_is_in_the_help(capsys):
    """The unknown-key error sends the user to `keysync train --help`: every key must be listed there."""
    import re

    from keysync.train.config import CONFIG_KEYS

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    listed = capsys.readouterr().out
    assert [key for key in CONFIG_KEYS if not re.search(rf"\b{key}\b", listed)] == []


def test_train_config_errors_name_the_key(tmp_path, capsys):
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"model": "small", "data": "shards", "output": "run", "step": 3}))
    assert main(["train", "keyframe", "--config", str(config)]) == 1
    assert "unknown key step" in capsys.readouterr().err
    config.write_text(yaml.safe_dump({"model": "small", "data": "shards", "output": "run"}))
    assert main(["train", "keyframe", "--config", str(config), "--set", "seed"]) == 1
    assert "--set seed: expected KEY=VALUE" in capsys.readouterr().err
    assert main(["train", "keyframe", "--config", str(config), "--set", "sed=3"]) == 1
    assert "unknown key sed (did you mean seed?)" in capsys.readouterr().err
    assert main(["train", "keyframe", "--config", str(config), "--set", "keyframe_copy=true"]) == 1
    assert "keyframe_copy is for the interpolation stage" in capsys.readouterr().err
    assert main(["train", "vae", "--config", str(config), "--set", "audio_mlp.width=16"]) == 1
    assert "audio_mlp.width is for the keyframe and interpolation stages" in capsys.readouterr().err
    config.write_text(yaml.safe_dump({"model": "small", "data": "shards", "output": "run", "audio_mlp": {"widht": 16}}))
    assert main(["train", "keyframe", "--config", str(config)]) == 1
    assert "unknown key audio_mlp.widht (did you mean audio_mlp.width?)" in capsys.readouterr().err
    config.write_text(yaml.safe_dump({"model": "small", "data": "shards", "output": "run", "audio_mlp": 16}))
    assert main(["train", "keyframe", "--config", str(config)]) == 1
    assert "audio_mlp is a section of keys, such as audio_mlp: {width: 128}" in capsys.readouterr().err
    config.write_text(yaml.safe_dump({"model": "small", "data": "shards", "output": "run"}))
    assert main(["train", "keyframe", "--config", str(config), "--set", "freeze_audio=true"]) == 1  # removed
    assert "unknown key freeze_audio" in capsys.readouterr().err
    config.write_text("- a list\n")
    assert main(["train", "keyframe", "--config", str(config)]) == 1
    assert "not a mapping" in capsys.readouterr().err


def test_prepare_in_several_processes_writes_the_same_shards(tmp_path):
    src = tmp_path / "videos"
    src.mkdir()
    for k, name in enumerate(("a", "b", "c")):
        frames = 16 + 4 * k
        speech = (0.3 * np.sin(2 * np.pi * 200 * np.arange(frames * 640) / 16000)).astype(np.float32)
        write_clip(src / f"{name}.mp4", moving_frames(astronaut(), 240, 240, frames, photo_height=200), rate=25, audio=speech)
    micro_model().save_pretrained(tmp_path / "model")
    model = KeySyncModel.from_pretrained(tmp_path / "model")
    prepare(src, tmp_path / "one", model, progress=False, latents=False)
    shards = prepare(src, tmp_path / "two", model, progress=False, latents=False, jobs=2)
    assert [p.name for p in shards] == ["a.safetensors", "b.safetensors", "c.safetensors"]
    for shard in shards:
        one, two = load_file(tmp_path / "one" / shard.name), load_file(shard)
        assert one.keys() == two.keys() and len(one["pixels"]) == len(two["pixels"]) > 0
        for key in one:
            assert torch.equal(one[key], two[key]), (shard.name, key)


def test_sampler_draws_the_configured_mask_minus_occluders(tmp_path):
    from safetensors.torch import save_file

    from keysync.synth.dataset import plan_dataset, render_clip
    from keysync.synth.visemes import mouth_track
    from keysync.train.data import ClipSampler

    spec = plan_dataset(1, 0, 64, 64, only_split="test")[0]
    frames, landmarks, _ = render_clip(spec, mouth_track([], 14, spec.fps, spec.identity.articulation))
    occluders = np.zeros((14, 64, 64), np.uint8)
    occluders[:, 48:, :] = 1  # something in front of the chin
    shard = {
        "pixels": torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(),
        "landmarks": torch.from_numpy(landmarks).float(),
        "present": torch.ones(14, dtype=torch.uint8),
        "latents": torch.zeros(14, 4, 16, 16),
        "audio_keyframe": torch.zeros(14, 2, 8),
        "audio_interpolation": torch.zeros(14, 2, 8),
    }
    save_file(shard, tmp_path / "plain.safetensors")
    box = ClipSampler(tmp_path, "interpolation", mask="box")(0)["masks"]
    mouth = ClipSampler(tmp_path, "interpolation", mask="mouth")(0)["masks"]
    assert box.shape == (14, 1, 16, 16) and 0 < mouth.sum() < box.sum()
    assert (mouth <= box).all()  # the mouth box lies inside the lower-face box
    save_file({**shard, "occluders": torch.from_numpy(occluders)}, tmp_path / "plain.safetensors")
    covered = ClipSampler(tmp_path, "interpolation", mask="box")(0)["masks"]
    assert covered[:, :, 12:].sum() == 0 and torch.equal(covered[:, :, :12], box[:, :, :12])


def test_init_networks_starts_a_wider_vae_model_from_trained_networks(tmp_path):
    """`init_networks`: the small-128 model starts from the 64 px model's networks, widened to 8 channels."""
    from keysync.errors import KeySyncError
    from keysync.train.stage import init_network

    micro_model().save_pretrained(tmp_path / "narrow")
    trained = KeySyncModel.from_pretrained(tmp_path / "narrow").interpolation.eval()
    model = micro_model(latent_channels=8)
    init_network(model, "interpolation", str(tmp_path / "narrow"))
    net = model.interpolation.eval()
    assert net.config.latent_channels == 8 and model.keyframe.config.latent_channels == 8
    x, ends = torch.randn(14, 8, 8, 8), torch.randn(1, 8, 2, 8, 8)
    context, c_noise = torch.randn(1, 14, 32), torch.zeros(14)
    with torch.no_grad():
        old = trained(x[:, :4], c_noise, trained.embed_frames(ends[:, :4]), context)
        new = net(x, c_noise, net.embed_frames(ends), context)
    assert torch.allclose(new[:, :4], old, atol=1e-5)
    big = micro_model()
    big.keyframe.register_to_config(latent_size=16)
    with pytest.raises(KeySyncError, match="same latent size"):
        init_network(big, "keyframe", str(tmp_path / "narrow"))
    model.save_pretrained(tmp_path / "wide")
    with pytest.raises(KeySyncError, match="narrow the latent channels from 8 to 4"):
        init_network(micro_model(), "keyframe", str(tmp_path / "wide"))


def test_shards_take_the_ground_truth_beside_a_synthetic_clip(tmp_path):
    """keysync synth's NAME.npz: the occluders and mouth parameters go into the shard; real footage has none."""
    from keysync.train.data import _ground_truth_for

    mouth = np.random.default_rng(0).random((5, 5)).astype(np.float32)
    np.savez(tmp_path / "clip.npz", mouth=mouth, occluder=np.zeros((5, 8, 8), np.uint8), landmarks=np.zeros((5, 68, 2)))
    truth = _ground_truth_for(tmp_path / "clip.mp4")
    assert sorted(truth) == ["mouth", "occluder"] and np.array_equal(truth["mouth"], mouth)
    assert _ground_truth_for(tmp_path / "real.mp4") == {}


def test_prepare_rebuilds_a_shard_that_lacks_its_clips_mouth_parameters(tmp_path):
    """A shard written before shards kept the mouth (or before NAME.npz had it), or cut by an older crop plan, is
    rebuilt; a complete one is not."""
    src = tmp_path / "videos"
    src.mkdir()
    speech = (0.3 * np.sin(2 * np.pi * 200 * np.arange(16 * 640) / 16000)).astype(np.float32)
    write_clip(src / "a.mp4", moving_frames(astronaut(), 240, 240, 16, photo_height=200), rate=25, audio=speech)
    model = micro_model()
    prepare(src, tmp_path / "shards", model, progress=False, latents=False)
    shard = tmp_path / "shards" / "a.safetensors"
    assert "mouth" not in load_file(shard)
    mouth = np.random.default_rng(0).random((16, 5)).astype(np.float32)
    np.savez(src / "a.npz", mouth=mouth)
    prepare(src, tmp_path / "shards", model, progress=False, latents=False)
    assert np.array_equal(load_file(shard)["mouth"].numpy(), mouth)  # 25 fps: model frame k is video frame k
    stamp = shard.stat().st_mtime_ns
    prepare(src, tmp_path / "shards", model, progress=False, latents=False)
    assert shard.stat().st_mtime_ns == stamp
    # a shard cut by another crop plan than the model's is rebuilt too (one that names none: "landmarks")
    model.info["crops"] = "head"  # as a preset's
    save_file(load_file(shard), shard, metadata={"source": str(src / "a.mp4")})
    prepare(src, tmp_path / "shards", model, progress=False, latents=False)
    with safe_open(shard, "pt") as f:
        assert f.metadata()["crops"] == "head"
    landmarks_before = load_file(shard)["landmarks"]
    model.info["crops"] = "landmarks"  # as the small model shipped so far was trained
    prepare(src, tmp_path / "shards", model, progress=False, latents=False)
    with safe_open(shard, "pt") as f:
        assert f.metadata()["crops"] == "landmarks"
    assert not torch.equal(load_file(shard)["landmarks"], landmarks_before)  # other crops
