"""Training on two processes (gloo on CPU, as on GPUs with nccl): gradients are averaged, so the replicas
stay identical although each trains on its own clips."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from safetensors.torch import load_file

from .micro import micro_model

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    from accelerate import PartialState
    from safetensors.torch import save_file
    sys.path.insert(0, {root!r})
    from keysync.train import Recipe, TrainConfig, train
    from tests.micro import micro_model
    from tests.test_train_recipe import batch_for

    seen = []

    def batches(draw):
        seen.append(draw)
        return batch_for("keyframe", clips=1, latent=8, feat=40, pixels=32, seed=draw)

    model = micro_model()
    model.vae.requires_grad_(False)
    train(model, TrainConfig("keyframe", {out!r}, steps=2, checkpoint_every=2, recipe=Recipe(lr=1e-2, warmup_steps=1)),
          batches)
    state = PartialState()
    weights = {{k: v.contiguous() for k, v in model.keyframe.state_dict().items()}}
    weights["draws"] = torch.tensor(seen)
    save_file(weights, f"{out}/rank{{state.process_index}}.safetensors")
    """
)


def test_two_processes_average_their_gradients(tmp_path):
    script = tmp_path / "train2.py"
    script.write_text(SCRIPT.format(root=str(ROOT), out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1)]
    assert ranks[0].pop("draws").tolist() == [0, 2] and ranks[1].pop("draws").tolist() == [1, 3]  # own clips
    start = micro_model().keyframe.state_dict()
    moved = [k for k in start if not torch.equal(ranks[0][k], start[k])]
    assert moved  # it trained...
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in start)  # ...and the replicas agree bit for bit
    rows = (tmp_path / "keyframe" / "log.csv").read_text().splitlines()
    assert len(rows) == 3  # one log, written by the main process
