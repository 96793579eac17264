"""How much of the jaw's motion the log-mel window the small model reads can tell: a linear map against a
two-layer perceptron.

Both are fitted on a `keysync synth` dataset's training clips (the window of frames each network sees,
each frame's jaw opening from the ground truth) and scored on the held-out clips as `keysync bench` scores
sync: per-clip correlation of the predicted and true jaw opening. The networks' audio tokens are a linear
map of this window (``KeySyncNet.audio_proj``). Usage:

    python benchmarks/audio_to_jaw_probe.py --data data/synth --out benchmarks/results/audio_to_jaw_probe.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from keysync.audio import LogMelFeatures, frame_windows
from keysync.bench.metrics import pearson
from keysync.synth.clipio import read_wav
from keysync.synth.dataset import load_split


def windows_and_jaw(data: Path, split: str, each_side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every speech clip's frames: (N, (2k+1) 80) network audio inputs, (N,) jaw opening, (N,) clip index."""
    features, inputs, jaw, clip = LogMelFeatures(80), [], [], []
    records = [r for r in load_split(data, split) if r.spec().sound == "speech"]
    for i, record in enumerate(records):
        opening = record.truth()["mouth"][:, 0]
        rows = frame_windows(features(read_wav(record.wav), len(opening)), each_side)
        inputs.append(rows.reshape(len(rows), -1, 2, rows.shape[-1]).mean(2).flatten(1).numpy())  # as KeySyncNet.embed_audio
        jaw.append(opening)
        clip.append(np.full(len(opening), i))
    return np.concatenate(inputs), np.concatenate(jaw), np.concatenate(clip)


def per_clip(pred: np.ndarray, jaw: np.ndarray, clip: np.ndarray) -> list[float]:
    return [pearson(pred[clip == c], jaw[clip == c]) for c in np.unique(clip)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a `keysync synth` dataset")
    parser.add_argument("--window", type=int, default=3, help="frames of audio each side (the shipped networks': 3)")
    parser.add_argument("--steps", type=int, default=4000, help="perceptron training steps")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args()
    x, y, _ = windows_and_jaw(Path(args.data), "train", args.window)
    mean, std = x.mean(0), x.std(0) + 1e-6
    y_mean, y_std = y.mean(), y.std()
    xs, ys = (x - mean) / std, (y - y_mean) / y_std
    linear = np.linalg.solve(xs.T @ xs + 10 * np.eye(xs.shape[1]), xs.T @ ys)  # ridge

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(xs.shape[1], 256), torch.nn.SiLU(), torch.nn.Linear(256, 256), torch.nn.SiLU(), torch.nn.Linear(256, 1))
    opt = torch.optim.AdamW(mlp.parameters(), 1e-3, weight_decay=1e-2)
    xt, yt = torch.tensor(xs, dtype=torch.float32), torch.tensor(ys, dtype=torch.float32)
    for _ in range(args.steps):
        idx = torch.randint(0, len(xt), (256,))
        loss = ((mlp(xt[idx] + 0.1 * torch.randn(256, xt.shape[1]))[:, 0] - yt[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    result = {"data": args.data, "window": args.window, "train_frames": len(y)}
    for split in ("val", "test"):
        xh, yh, clip = windows_and_jaw(Path(args.data), split, args.window)
        xh = (xh - mean) / std
        with torch.no_grad():
            mlp_pred = mlp(torch.tensor(xh, dtype=torch.float32))[:, 0].numpy()
        for name, pred in (("linear", xh @ linear), ("mlp", mlp_pred)):
            scores = per_clip(pred, yh, clip)
            result[f"{split}_{name}"] = {
                "mean": float(np.mean(scores)), "min": float(np.min(scores)),
                "below_0.75": int(np.sum(np.array(scores) < 0.75)), "clips": len(scores),
            }
            print(f"{split} {name}: per-clip jaw correlation {np.mean(scores):.3f} (min {np.min(scores):.3f}, "
                  f"{result[f'{split}_{name}']['below_0.75']}/{len(scores)} below 0.75)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
