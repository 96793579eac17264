"""keysync prepare + keysync train on a real-face clip with a tiny random model (plumbing)."""

import json

import numpy as np
import yaml
from safetensors.torch import load_file

from keysync.cli import main

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
    assert main(["prepare", str(src), str(shards), "--model", str(tmp_path / "model")]) == 0
    shard = load_file(shards / "talk.safetensors")
    assert shard["latents"].shape == (40, 4, 8, 8) and shard["pixels"].shape == (40, 3, 32, 32)
    assert shard["audio_keyframe"].shape == (40, 2, 40) and shard["present"].all()
    assert 0 < shard["masks"].float().mean() < 1
    stamp = (shards / "talk.safetensors").stat().st_mtime_ns
    assert main(["prepare", str(src), str(shards), "--model", str(tmp_path / "model")]) == 0  # resumes: nothing redone
    assert (shards / "talk.safetensors").stat().st_mtime_ns == stamp

    run = tmp_path / "run"
    config = {"model": str(tmp_path / "model"), "data": str(shards), "output": str(run), "steps": 2,
              "checkpoint_every": 2, "lr": 1e-3, "warmup_steps": 1}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    for stage in ("keyframe", "interpolation"):
        assert main(["train", stage, "--config", str(tmp_path / "train.yaml")]) == 0
    assert (run / "model" / "keysync.json").is_file()
    marker = json.loads((run / "interpolation" / "checkpoints" / "latest.json").read_text())
    assert marker["step"] == 2
    config["steps"] = 3
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "interpolation", "--config", str(tmp_path / "train.yaml")]) == 0
    assert "resumed" in capsys.readouterr().out
    assert main(["train", "vae", "--config", str(tmp_path / "train.yaml")]) == 1
