"""Checkpoint conversion and model folders: strict key/shape checks, the released layout, round trips."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from keysync.cli import main
from keysync.errors import KeySyncError
from keysync.models import KeySyncModel
from keysync.models.convert import convert_checkpoints, read_checkpoint
from keysync.models.official import decoder_official_names, is_conv1x1_as_linear, network_official_names

from .conftest import MANIFESTS, OFFICIAL_TINY, require_fixtures

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
        official_configs=configs(), log=lambda *_: None, **kwargs,
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


def test_unused_conditioner_autoencoder_is_skipped(tmp_path, tiny_ckpts):
    it = dict(tiny_ckpts["interpolation"], **{"conditioner.embedders.0.encoder.encoder.conv_in.weight": torch.zeros(2)})
    logs = []
    convert_checkpoints(
        write(tmp_path, tiny_ckpts["keyframe"], "kf.safetensors"), write(tmp_path, it, "it.safetensors"),
        official_configs=configs(), log=logs.append,
    )
    assert any("skipped 1 tensors of the unused conditioner autoencoder" in line for line in logs)


def test_default_preset_rejects_tiny_checkpoint(tmp_path, tiny_ckpts):
    """Without --official-config the released sizes are assumed, so a tiny checkpoint must not load."""
    with pytest.raises(KeySyncError, match="wrong shape"):
        convert_checkpoints(
            write(tmp_path, tiny_ckpts["keyframe"], "kf.safetensors"),
            write(tmp_path, tiny_ckpts["interpolation"], "it.safetensors"), log=lambda *_: None,
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
    assert (out / "keysync.json").is_file()
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
