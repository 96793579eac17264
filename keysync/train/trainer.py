"""The training loop on accelerate: one CPU to many GPUs, mixed precision, checkpoints and exact resume.

Every step draws its randomness (noise levels, noise, dropout, the pixel-loss frame) from a generator
seeded by (seed, draw), and ``batches(draw)`` gives the draw's data, with draw = step x processes + rank,
so a run resumed from a checkpoint continues the very same loss curve as one that never stopped, and each
process trains on its own clips. Gradients are averaged across processes explicitly after each backward,
because the losses call the networks' own methods, which a DDP wrapper's forward would not see.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from ..models import KeySyncModel
from .config import TrainConfig
from .recipe import freeze_temporal_layers, make_optimizer, training_step
from .samples import write_sample

log = logging.getLogger(__name__)

SAMPLE_CLIP = -1_000_000  # the draw of the clip that sample videos show: one no training step draws


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def latest_checkpoint(output: Path) -> tuple[Path | None, int]:
    marker = output / "checkpoints" / "latest.json"
    if not marker.is_file():
        return None, 0
    info = json.loads(marker.read_text())
    return output / "checkpoints" / info["folder"], int(info["step"])


def train(model: KeySyncModel, config: TrainConfig, batches: Callable[[int], dict]) -> list[float]:
    """Train ``config.stage`` of ``model`` until ``config.steps``, resuming from the run folder if it holds
    a checkpoint. Returns the losses of the steps run by this call."""
    from accelerate import Accelerator

    output = Path(config.output) / config.stage
    (output / "checkpoints").mkdir(parents=True, exist_ok=True)
    if config.sample_every:
        (output / "samples").mkdir(exist_ok=True)
    _release_precision(config.mixed_precision)
    accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=not torch.cuda.is_available())
    net = getattr(model, config.stage)
    model.vae.requires_grad_(False).eval()
    net.requires_grad_(True)  # a loaded model folder comes frozen for inference
    if config.freeze_temporal and config.stage != "vae":
        freeze_temporal_layers(net)
    if config.freeze_encoder and config.stage == "vae":
        net.encoder.requires_grad_(False)
        net.quant_conv.requires_grad_(False)
    if config.gradient_checkpointing:
        net.enable_gradient_checkpointing()
    optimizer, schedule = make_optimizer(net, config.recipe)
    # Across processes, prepare wraps the network in DDP, which broadcasts rank 0's weights; the losses call
    # the unwrapped network, so DDP's own gradient hooks stay idle and reduce_gradients does the averaging.
    net, optimizer, schedule = accelerator.prepare(net, optimizer, schedule)
    model.vae.to(accelerator.device)
    world, rank = accelerator.num_processes, accelerator.process_index

    def reduce_gradients(params):
        for p in params:
            if p.grad is not None:
                p.grad = accelerator.reduce(p.grad, reduction="mean")

    log_path = output / "log.csv"
    main = accelerator.is_main_process
    folder, start = latest_checkpoint(output)
    if folder is not None:
        accelerator.load_state(str(folder))
        log.info(f"resumed from {folder} at step {start}")
        if main:
            _drop_log_rows_after(log_path, start)
    losses = []
    parts = ("l1", "edge") if config.stage == "vae" else ("diffusion", "pixel")
    with log_path.open("a", newline="") if main else contextlib.nullcontext() as handle:
        writer = csv.writer(handle) if main else None
        if main and start == 0 and log_path.stat().st_size == 0:
            writer.writerow(["step", "loss", *parts, "lr"])
        for step in range(start, config.steps):
            draw = step * world + rank
            batch = {k: v.to(accelerator.device) for k, v in batches(draw).items()}
            out = training_step(
                model, config.stage, batch, optimizer, schedule, config.recipe, _step_generator(config.seed, draw),
                autocast=accelerator.autocast, backward=accelerator.backward,
                reduce_gradients=reduce_gradients if world > 1 else None,
            )
            if world > 1:  # log the mean over processes
                out = {k: float(accelerator.reduce(torch.tensor(v, device=accelerator.device), reduction="mean")) for k, v in out.items()}
            losses.append(out["loss"])
            if main:
                writer.writerow([step + 1, out["loss"], *(float(out.get(p, float("nan"))) for p in parts), schedule.get_last_lr()[0]])
                handle.flush()
            if main and config.sample_every and (step + 1) % config.sample_every == 0:
                sample = {k: v.to(accelerator.device) for k, v in batches(SAMPLE_CLIP).items()}
                write_sample(model, config.stage, sample, output / "samples" / f"step_{step + 1:08d}.mp4", seed=config.seed)
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                name = f"step_{step + 1:08d}"
                accelerator.save_state(str(output / "checkpoints" / name))
                if main:
                    marker = output / "checkpoints" / "latest.json"
                    tmp = marker.with_suffix(".tmp")
                    tmp.write_text(json.dumps({"folder": name, "step": step + 1, "config": _describe(config)}))
                    tmp.replace(marker)
                accelerator.wait_for_everyone()
    return losses


def _release_precision(mixed_precision: str) -> None:
    """accelerate keeps one state per process and refuses a second Accelerator with another precision, so
    a library user training twice in one process (fp32, then bf16) would be stopped; forget the precision
    but keep the process group (the PartialState), which a distributed run still needs."""
    from accelerate.state import AcceleratorState

    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", mixed_precision) != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)


def _drop_log_rows_after(log_path: Path, step: int) -> None:
    """A run killed between checkpoints logged steps it will redo: drop them, so each step is logged once."""
    if not log_path.is_file():
        return
    lines = log_path.read_text().splitlines(keepends=True)
    kept = [line for line in lines[1:] if int(line.split(",", 1)[0]) <= step]
    if len(kept) < len(lines) - 1:
        tmp = log_path.with_suffix(".tmp")
        tmp.write_text("".join(lines[:1] + kept))
        tmp.replace(log_path)


def _describe(config: TrainConfig) -> dict:
    data = asdict(config)
    data["recipe"] = asdict(config.recipe)
    return data
