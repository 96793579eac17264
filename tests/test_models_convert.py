"""Checkpoint conversion and model folders: strict key/shape checks, the released layout, round trips."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from keysync.cli import main
from keysync.errors import KeySyncError
from keysync.models import KeySyncModel
from keysync.models.convert import convert_checkpoints, read_checkpoint
from keysync.models.model import shipped_model_dir
from keysync.models.network import KeySyncNet
from keysync.models.official import (
    configs_from_official,
    decoder_official_names,
    is_conv1x1_as_linear,
    network_official_names,
    read_official_config,
)
from keysync.models.vae import KeySyncVAE

from .conftest import MANIFESTS, OFFICIAL_TINY, assert_umask_modes, require_fixtures

KINDS = ("keyframe", "interpolation")


def official_layout(model: KeySyncModel, kind: str) -> dict[str, list[int]]:
    """Our network (+ VAE decoder) under the official key names, with official shapes."""
    net = getattr(model, kind)
    sd = net.state_dict()
    layout = {theirs: list(sd[ours].shape) for ours, theirs in network_official_names(net).items()}
    vae = model.vae.state_dict()
    for ours, theirs in decoder_official_names(model.vae).items():
        layout[theirs] = list(vae[ours].shape) + ([1, 1] if is_conv1x1_as_linear(ours) else [])
    return layout


@pytest.mark.parametrize(
    "kind,manifest", [("keyframe", "keyframe_params.json"), ("interpolation", "interpolation_params_trainconfig.json")]
)
def test_official_preset_matches_released_manifest(kind, manifest):
    require_fixtures()
    expected = json.loads((MANIFESTS / manifest).read_text())
    model = KeySyncModel.from_preset("official", device="meta")
    assert official_layout(model, kind) == expected
    assert all(p.is_meta for p in getattr(model, kind).parameters())


def test_official_names_are_a_bijection():
    model = KeySyncModel.from_preset("official", device="meta")
    for kind in KINDS:
        names = network_official_names(getattr(model, kind))
        assert len(set(names.values())) == len(names)


def test_tiny_preset_is_the_fixture_size():
    require_fixtures()
    model = KeySyncModel.from_preset("tiny", device="meta")
    for kind in KINDS:
        shapes = json.loads((OFFICIAL_TINY / f"{kind}_tiny" / "config.json").read_text())["state_dict_shapes"]
        layout = official_layout(model, kind)
        assert {k: layout[k] for k in shapes} == shapes


@pytest.fixture()
def tiny_ckpts(tmp_path):
    require_fixtures()
    return {k: load_file(OFFICIAL_TINY / f"{k}_tiny" / "state_dict.safetensors") for k in KINDS}


def configs():
    return [OFFICIAL_TINY / f"{k}_tiny" / "config.json" for k in KINDS]


def write(tmp_path, tensors, name):
    path = tmp_path / name
    save_file(tensors, path)
    return path


def convert(tmp_path, kf, it, **kwargs):
    return convert_checkpoints(
        write(tmp_path, kf, "kf.safetensors"), write(tmp_path, it, "it.safetensors"),
        official_configs=configs(), **kwargs,
    )


def test_rejects_missing_key(tmp_path, tiny_ckpts):
    kf = dict(tiny_ckpts["keyframe"])
    del kf["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"]
    with pytest.raises(KeySyncError, match=r"missing 1: model\.diffusion_model\.input_blocks\.1\.1\.transformer_blocks\.0\.attn2\.to_k\.weight"):
        convert(tmp_path, kf, tiny_ckpts["interpolation"])


def test_rejects_extra_key(tmp_path, tiny_ckpts):
    it = dict(tiny_ckpts["interpolation"], **{"model.diffusion_model.extra.weight": torch.zeros(3)})
    with pytest.raises(KeySyncError, match=r"unexpected tensors: model\.diffusion_model\.extra\.weight"):
        convert(tmp_path, tiny_ckpts["keyframe"], it)


def test_rejects_wrong_shape(tmp_path, tiny_ckpts):
    kf = dict(tiny_ckpts["keyframe"])
    kf["conditioner.embedders.2.linear.weight"] = torch.zeros(64, 1024)
    with pytest.raises(KeySyncError, match=r"wrong shape 1: conditioner\.embedders\.2\.linear\.weight \(64, 1024\)"):
        convert(tmp_path, kf, tiny_ckpts["interpolation"])


def test_rejects_wrong_shape_in_vae_decoder(tmp_path, tiny_ckpts):
    kf = dict(tiny_ckpts["keyframe"])
    kf["first_stage_model.decoder.mid.attn_1.q.weight"] = torch.zeros(64, 64)
    with pytest.raises(KeySyncError, match=r"first_stage_model\.decoder\.mid\.attn_1\.q\.weight \(64, 64\)"):
        convert(tmp_path, kf, tiny_ckpts["interpolation"])


def test_unused_conditioner_autoencoder_is_skipped(tmp_path, tiny_ckpts, caplog):
    it = dict(tiny_ckpts["interpolation"], **{"conditioner.embedders.0.encoder.encoder.conv_in.weight": torch.zeros(2)})
    with caplog.at_level("INFO", logger="keysync.models.convert"):
        convert_checkpoints(
            write(tmp_path, tiny_ckpts["keyframe"], "kf.safetensors"), write(tmp_path, it, "it.safetensors"),
            official_configs=configs(),
        )
    assert any("skipped 1 tensors of the unused conditioner autoencoder" in line for line in caplog.messages)


def test_default_preset_rejects_tiny_checkpoint(tmp_path, tiny_ckpts):
    """Without --official-config the released sizes are assumed, so a tiny checkpoint must not load."""
    with pytest.raises(KeySyncError, match="wrong shape"):
        convert_checkpoints(
            write(tmp_path, tiny_ckpts["keyframe"], "kf.safetensors"),
            write(tmp_path, tiny_ckpts["interpolation"], "it.safetensors"),
        )


def test_reads_deepspeed_and_lightning_pickles(tmp_path, tiny_ckpts):
    kf = tiny_ckpts["keyframe"]
    torch.save({"module": {f"_forward_module.{k}": v for k, v in kf.items()}}, tmp_path / "kf.pt")
    torch.save({"state_dict": kf, "epoch": 3}, tmp_path / "kf.ckpt")
    assert read_checkpoint(tmp_path / "kf.pt").keys() == kf.keys()
    got = read_checkpoint(tmp_path / "kf.ckpt")
    assert all(torch.equal(got[k], v) for k, v in kf.items())


class Opaque:
    """An object that weights_only unpickling refuses."""


def test_pickle_needing_full_unpickling_needs_opt_in(tmp_path, tiny_ckpts):
    path = tmp_path / "kf.ckpt"
    torch.save({"state_dict": tiny_ckpts["keyframe"], "extra": Opaque()}, path)
    with pytest.raises(KeySyncError, match="--trust-pickle"):
        read_checkpoint(path)
    assert read_checkpoint(path, trust_pickle=True).keys() == tiny_ckpts["keyframe"].keys()


def test_model_folder_round_trip_and_strict_load(tmp_path, tiny_ckpts):
    model = convert(tmp_path, tiny_ckpts["keyframe"], tiny_ckpts["interpolation"])
    out = tmp_path / "model"
    model.save_pretrained(out)
    with pytest.raises(KeySyncError, match="already exists"):
        model.save_pretrained(out)
    loaded = KeySyncModel.from_pretrained(out)
    for name, module in model.components().items():
        ref = module.state_dict()
        for k, v in loaded.components()[name].state_dict().items():
            if not (name == "vae" and k.startswith(("encoder.", "quant_conv."))):
                assert torch.equal(v, ref[k]), k
    assert not loaded.has_vae_encoder

    # A folder whose weights do not match its config fails with the names.
    weights = load_file(out / "keyframe" / "model.safetensors")
    weights.pop("audio_proj.bias")
    save_file(weights, out / "keyframe" / "model.safetensors")
    with pytest.raises(KeySyncError, match=r"missing 1: audio_proj\.bias"):
        KeySyncModel.from_pretrained(out)


def test_vae_encoder_from_svd_vae(tmp_path, tiny_ckpts):
    donor = KeySyncModel.from_preset("tiny").vae
    vae_dir = tmp_path / "svd_vae"
    vae_dir.mkdir()
    save_file(donor.state_dict(), vae_dir / "diffusion_pytorch_model.safetensors")
    model = convert(tmp_path, tiny_ckpts["keyframe"], tiny_ckpts["interpolation"], vae_path=vae_dir)
    assert model.has_vae_encoder
    assert torch.equal(model.vae.encoder.conv_in.weight, donor.encoder.conv_in.weight)
    # the decoder still comes from the KeySync checkpoint, not the donor
    assert not torch.equal(model.vae.decoder.conv_in.weight, donor.decoder.conv_in.weight)
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert model.vae.encode_frames(pixels).shape == (2, 4, 16, 16)


def test_cli_convert(tmp_path, tiny_ckpts, capsys):
    kf = write(tmp_path, tiny_ckpts["keyframe"], "kf.safetensors")
    it = write(tmp_path, tiny_ckpts["interpolation"], "it.safetensors")
    out = tmp_path / "model"
    args = [str(kf), str(it), "-o", str(out)] + sum([["--official-config", str(c)] for c in configs()], [])
    assert main(["convert", *args]) == 0
    assert "keyframe: 628 tensors converted from" in capsys.readouterr().err  # the log, on stderr
    assert (out / "keysync.json").is_file()
    assert_umask_modes(out)
    assert main(["convert", *args]) == 1  # exists, no --overwrite
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0] and "--overwrite" in err[0]
    assert main(["convert", *args, "--overwrite", "--dtype", "float16"]) == 0
    assert load_file(out / "keyframe" / "model.safetensors")["audio_proj.weight"].dtype == torch.float16
    assert main(["convert", str(tmp_path / "nope.pt"), str(it), "-o", str(tmp_path / "m2")]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
    assert not (tmp_path / "m2").exists()


def test_download_offline_fails_at_once_naming_what_to_fetch(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["download", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "toninio19/keysync" in err[0] and "facebook/hubert-base-ls960" in err[0]
    assert "keysync convert" in err[0]
    assert not (tmp_path / "m").exists()


def test_folder_without_vae_encoder_refuses_to_encode(tmp_path, tiny_ckpts):
    model = convert(tmp_path, tiny_ckpts["keyframe"], tiny_ckpts["interpolation"])
    model.save_pretrained(tmp_path / "model")
    loaded = KeySyncModel.from_pretrained(tmp_path / "model")
    with pytest.raises(KeySyncError, match="--vae"):
        loaded.vae.encode_frames(torch.zeros(1, 3, 32, 32))
    decoded = loaded.vae.decode_frames(torch.zeros(2, 4, 16, 16), frames_per_call=2)  # decoding still works
    assert decoded.shape == (2, 3, 32, 32)


def test_export_writes_fp16_that_loads_and_runs_in_float32(tmp_path, capsys):
    from safetensors.torch import load_file

    from keysync.cli import main
    from keysync.pipeline.dub import KeySyncPipeline

    from .micro import micro_model

    source = micro_model()
    source.info.pop("crops", None)  # written before models named their crop plan
    source.save_pretrained(tmp_path / "fp32")
    assert main(["export", str(tmp_path / "fp32"), "-o", str(tmp_path / "fp16"), "--note", "a test model", "--guidance", "2,1.5"]) == 0
    assert json.loads((tmp_path / "fp16" / "keysync.json").read_text())["crops"] == "landmarks"  # the plan it was read with, named
    stored = load_file(tmp_path / "fp16" / "keyframe" / "model.safetensors")
    assert {v.dtype for v in stored.values()} == {torch.float16}
    pipe = KeySyncPipeline.from_pretrained(tmp_path / "fp16")
    assert {p.dtype for p in pipe.model.keyframe.parameters()} == {torch.float32}
    assert pipe.model.info["note"] == "a test model" and pipe.model.info["guidance"] == [2.0, 1.5]
    assert main(["export", str(tmp_path / "fp32"), "-o", str(tmp_path / "fp16")]) == 1  # exists: not replaced
    assert "already exists" in capsys.readouterr().err


# --- official configs beyond the fixtures' sizes ----------------------------------------------------------


def official_config(tmp_path, kind, wrapper=None, **unet):
    """The fixture's official ``kind`` config with some wrapper / UNet params changed, written as yaml."""
    data = json.loads((OFFICIAL_TINY / f"{kind}_tiny" / "config.json").read_text())["official_config"]
    params = data["model"]["params"]
    params["network_wrapper"]["params"].update(wrapper or {})
    params["network_config"]["params"].update(unet)
    path = tmp_path / f"{kind}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def official_checkpoint(config, path, seed=0):
    """What an official run on ``config`` saves: the network and VAE decoder that config builds (through
    ``configs_from_official``), seeded random weights, official key names, official (1x1 conv) shapes."""
    _, net_cfg, vae_cfg = configs_from_official(read_official_config(config))
    torch.manual_seed(seed)
    net, vae = KeySyncNet(**net_cfg), KeySyncVAE(**vae_cfg)
    sd, vae_sd = net.state_dict(), vae.state_dict()
    tensors = {theirs: torch.randn(sd[ours].shape) * 0.1 for ours, theirs in network_official_names(net).items()}
    for ours, theirs in decoder_official_names(vae).items():
        tensors[theirs] = vae_sd[ours].reshape(vae_sd[ours].shape + ((1, 1) if is_conv1x1_as_linear(ours) else ()))
    save_file(tensors, path)
    return path


def non_square_interpolation(tmp_path, tiny_ckpts, mask_hw=(12, 20)):
    """The fixture's official interpolation tensors with a learned mask of ``mask_hw``: every other tensor
    of the official UNet is independent of the crop size."""
    it = dict(tiny_ckpts["interpolation"])
    it["model.learned_mask"] = torch.randn(4, *mask_hw)
    return write(tmp_path, it, "it.safetensors")


def test_non_square_official_interpolation_converts_and_runs(tmp_path, tiny_ckpts):
    """Issue 39: im_size [96, 160] is a (4, 12, 20) learned mask officially ([h // 8, w // 8])."""
    it_cfg = official_config(tmp_path, "interpolation", wrapper={"im_size": [96, 160]})
    kf_cfg = OFFICIAL_TINY / "keyframe_tiny" / "config.json"
    kf, it = write(tmp_path, tiny_ckpts["keyframe"], "kf.safetensors"), non_square_interpolation(tmp_path, tiny_ckpts)
    model = convert_checkpoints(kf, it, official_configs=[kf_cfg, it_cfg])
    net = model.interpolation
    assert net.learned_mask.shape == (4, 12, 20) and net.latent_hw == model.keyframe.latent_hw == (12, 20)
    assert torch.equal(net.learned_mask, load_file(it)["model.learned_mask"])
    assert model.crop_hw == (24, 40)  # the tiny VAE downsamples by 2

    x, ends, context = torch.randn(14, 4, 12, 20), torch.randn(1, 4, 2, 12, 20), torch.randn(1, 14, 64)
    with torch.no_grad():
        out = net(x, torch.zeros(14), net.embed_frames(ends), context)
        pixels = model.vae.decode_frames(out, frames_per_call=14)
    assert out.shape == (14, 4, 12, 20) and torch.isfinite(out).all()
    assert pixels.shape == (14, 3, 24, 40)

    model.save_pretrained(tmp_path / "model")
    assert json.loads((tmp_path / "model" / "interpolation" / "config.json").read_text())["latent_size"] == [12, 20]
    loaded = KeySyncModel.from_pretrained(tmp_path / "model")
    assert torch.equal(loaded.interpolation.learned_mask, net.learned_mask)
    with pytest.raises(KeySyncError, match=r"24x40 .*non-square crops are not supported for dubbing yet"):
        loaded.crop_size


def test_int_latent_size_folders_still_load():
    """Folders written before [height, width] existed (the shipped model says ``"latent_size": 16``)."""
    assert json.loads((shipped_model_dir() / "keyframe" / "config.json").read_text())["latent_size"] == 16
    model = KeySyncModel.from_pretrained(shipped_model_dir())
    assert model.interpolation.latent_hw == (16, 16) and model.interpolation.learned_mask.shape[1:] == (16, 16)
    assert model.crop_size == 16 * model.vae.downsample_factor


# Official key shapes of a VideoUNet with channel_mult [1, 2, 2], num_res_blocks 1, attention at levels 0
# and 1, transformer_depth 2, derived by hand from sgm's VideoUNet (one res block + one downsample per level,
# num_res_blocks + 1 output blocks per level, skips concatenated), not from our name mapping.
DEEPER_KEYFRAME = {
    "input_blocks.0.0.weight": (32, 8, 3, 3),
    "input_blocks.2.0.op.weight": (32, 32, 3, 3),
    "input_blocks.3.0.skip_connection.weight": (64, 32, 1, 1),
    "input_blocks.3.1.transformer_blocks.1.attn2.to_k.weight": (64, 64),
    "input_blocks.3.1.time_stack.1.attn2.to_k.weight": (64, 64),
    "input_blocks.5.0.in_layers.2.weight": (64, 64, 3, 3),
    "middle_block.1.transformer_blocks.1.attn1.to_q.weight": (64, 64),
    "output_blocks.1.1.conv.weight": (64, 64, 3, 3),
    "output_blocks.3.0.in_layers.2.weight": (64, 96, 3, 3),
    "output_blocks.3.2.conv.weight": (64, 64, 3, 3),
    "output_blocks.4.0.skip_connection.weight": (32, 96, 1, 1),
    "output_blocks.5.1.transformer_blocks.1.attn1.to_q.weight": (32, 32),
    "out.2.weight": (4, 32, 3, 3),
}


def test_official_keyframe_of_other_depths_converts_and_runs(tmp_path, tiny_ckpts):
    kf_cfg = official_config(
        tmp_path, "keyframe", channel_mult=[1, 2, 2], num_res_blocks=1, transformer_depth=2, attention_resolutions=[1, 2]
    )
    kf = official_checkpoint(kf_cfg, tmp_path / "kf.safetensors")
    stored = {k.removeprefix("model.diffusion_model."): tuple(v.shape) for k, v in load_file(kf).items()}
    assert {k: stored.get(k) for k in DEEPER_KEYFRAME} == DEEPER_KEYFRAME
    assert not any(k.startswith(("input_blocks.5.1.", "input_blocks.6.", "output_blocks.6.")) for k in stored)
    assert not any(k.startswith(("output_blocks.0.1.", "output_blocks.1.2.")) for k in stored)  # level 2: no attention
    it = write(tmp_path, tiny_ckpts["interpolation"], "it.safetensors")
    it_cfg = OFFICIAL_TINY / "interpolation_tiny" / "config.json"
    model = convert_checkpoints(kf, it, official_configs=[kf_cfg, it_cfg])
    net = model.keyframe
    assert net.config.channel_mult == (1, 2, 2) and net.config.transformer_depth == 2
    x, ref, context = torch.randn(14, 4, 16, 16), torch.randn(1, 4, 16, 16), torch.randn(1, 14, 64)
    with torch.no_grad():
        out = net(x, torch.zeros(14), net.embed_frames(ref), context)
    assert out.shape == (14, 4, 16, 16) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "im_size,unet,error",
    [
        ([100, 160], {}, r"interpolation\.yaml: network_wrapper im_size \[100, 160\] is not divisible by 8"),
        ([104, 160], {}, r"interpolation\.yaml: network_wrapper im_size \[104, 160\] gives 13x20 latents, but a 2-level UNet needs latents divisible by 2"),
        ([96, 160], {"channel_mult": [1, 2, 2, 2]}, r"im_size \[96, 160\] gives 12x20 latents, but a 4-level UNet .*: im_size must be a multiple of 64"),
    ],
)
def test_rejects_im_size_the_official_networks_cannot_run(tmp_path, tiny_ckpts, im_size, unet, error):
    it_cfg = official_config(tmp_path, "interpolation", wrapper={"im_size": im_size}, **unet)
    with pytest.raises(KeySyncError, match=error):
        convert_checkpoints(
            write(tmp_path, tiny_ckpts["keyframe"], "kf.safetensors"), non_square_interpolation(tmp_path, tiny_ckpts),
            official_configs=[OFFICIAL_TINY / "keyframe_tiny" / "config.json", it_cfg],
        )


def test_rejects_crop_size_the_official_keyframe_unet_cannot_run(tmp_path, tiny_ckpts):
    """The keyframe network runs on the interpolation config's crops; 12x20 latents cannot go 4 levels deep."""
    it_cfg = official_config(tmp_path, "interpolation", wrapper={"im_size": [96, 160]})
    kf_cfg = official_config(tmp_path, "keyframe", channel_mult=[1, 2, 2, 2])
    with pytest.raises(KeySyncError, match=r"keyframe UNet has 4 levels, so its latents must be divisible by 8, but .* gives 12x20"):
        convert_checkpoints(
            write(tmp_path, tiny_ckpts["keyframe"], "kf.safetensors"), non_square_interpolation(tmp_path, tiny_ckpts),
            official_configs=[kf_cfg, it_cfg],
        )


def test_rejects_learned_mask_that_is_not_the_configs(tmp_path, tiny_ckpts):
    """A (4, 12, 20) mask with the fixture's im_size [128, 128] config: the config is not the checkpoint's."""
    it = non_square_interpolation(tmp_path, tiny_ckpts)
    with pytest.raises(KeySyncError, match=r"it\.safetensors: model\.learned_mask is \(4, 12, 20\) but the --official-config given makes \(4, 16, 16\)"):
        convert(tmp_path, tiny_ckpts["keyframe"], load_file(it))
