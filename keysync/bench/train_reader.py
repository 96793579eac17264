"""Train the shipped mouth reader on renders of the synthetic world.

Reproduce the shipped weights (about 20 minutes on one CPU thread of a shared 2-core machine) with::

    python -m keysync.bench.train_reader --seed 0

(``--evaluate-only`` re-scores the shipped weights without training.)

Training renders come from one stream of identities and the held-out evaluation from another, so the
reported error is on faces the reader has never seen. Mouth parameters are drawn independently and
uniformly (a quarter of the jaws near rest), head poses from the world's motion model, and each frame is
JPEG-compressed at a random quality, like decoded video. Writes the weights, a JSON report of the
per-parameter error on held-out identities (with the LipLeak threshold calibrated on it), and a PNG of
held-out renders with read and true values.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ..synth.render import FaceRenderer, Identity, Motion, Scene
from ..synth.visemes import MOUTH_PARAMS, REST
from .mouth_reader import WEIGHTS, MouthReader, mouth_crops, save_reader

RESULTS = Path("benchmarks/results")


def random_mouths(rng: np.random.Generator, n: int) -> np.ndarray:
    mouth = rng.uniform(0, 1, (n, len(MOUTH_PARAMS))).astype(np.float32)
    rest = rng.uniform(size=n) < 0.25
    mouth[rest] = REST + rng.uniform(-0.03, 0.05, (int(rest.sum()), len(MOUTH_PARAMS))) * [1, 3, 3, 0, 0]
    return np.clip(mouth, 0, 1)


def render_samples(seed: int, n: int, per_identity: int = 20, progress: bool = True):
    """``n`` (crop, mouth, frame, landmarks) samples; identities and scenes drawn from ``seed``."""
    import cv2
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    crops, mouths, frames, lms = [], [], [], []
    bar = tqdm(total=n, desc=f"rendering (seed {seed})", disable=not progress)
    while len(crops) < n:
        ident, scene = Identity.sample(rng), Scene.sample(rng)
        size = int(rng.choice([128, 160, 192, 224, 256]))
        renderer = FaceRenderer(ident, scene, size, size)
        poses = Motion(int(rng.integers(2**31)), amount=1.5).poses(250, 25)
        for mouth in random_mouths(rng, min(per_identity, n - len(crops))):
            frame, landmarks, _ = renderer.render(poses[int(rng.integers(len(poses)))], mouth)
            quality = int(rng.integers(30, 96))
            frame = cv2.imdecode(cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])[1], 1)[..., ::-1]
            jitter = landmarks + rng.normal(0, 0.01 * size * ident.face_size, (1, 2))  # imperfect landmark placement
            crops.append(mouth_crops(frame[None], jitter[None])[0])
            mouths.append(mouth)
            frames.append(frame)
            lms.append(landmarks)
            bar.update()
    bar.close()
    return np.stack(crops), np.stack(mouths), frames, lms


def train(seed: int, n_train: int, n_eval: int, steps: int, width: int, out: Path, results: Path) -> None:
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    t0 = time.time()
    x_train, y_train, _, _ = render_samples(seed * 1000 + 1, n_train)
    x_eval, y_eval, eval_frames, _ = render_samples(seed * 1000 + 2, n_eval)
    x_train = torch.from_numpy(x_train).permute(0, 3, 1, 2).contiguous()
    y_train = torch.from_numpy(y_train)
    model = MouthReader(width)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(x_train), (64,), generator=gen)
        x = x_train[idx].float() / 255.0
        # colour and brightness jitter: lighting is not a mouth parameter
        x = (x * (0.8 + 0.4 * torch.rand(len(x), 3, 1, 1, generator=gen))).clamp(0, 1)
        loss = torch.nn.functional.smooth_l1_loss(model(x), y_train[idx], beta=0.05)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == steps - 1:
            print(f"step {step} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    # evaluate exactly what ships: the weights rounded to fp16
    model.load_state_dict({k: v.half().to(v.dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()})
    evaluate(model, x_eval, y_eval, eval_frames, results, seed, n_train, n_eval, steps, width, out, time.time() - t0)


def command_line(seed: int, n_train: int, n_eval: int, steps: int, width: int) -> str:
    return f"python -m keysync.bench.train_reader --seed {seed} --train {n_train} --eval {n_eval} --steps {steps} --width {width}"


def evaluate(model, x_eval, y_eval, eval_frames, results: Path, seed, n_train, n_eval, steps, width, out: Path, seconds) -> None:
    """Score on held-out identities, calibrate the LipLeak threshold, write the report and the PNG, and
    save the weights with the threshold in their metadata."""
    import torch

    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x_eval).permute(0, 3, 1, 2).float() / 255.0).numpy()
    mae = np.abs(pred - y_eval).mean(0)
    corr = [float(np.corrcoef(pred[:, i], y_eval[:, i])[0, 1]) for i in range(len(MOUTH_PARAMS))]
    # LipLeak threshold: above what the reader says for mouths at rest, below most speaking jaws
    rest_read = pred[y_eval[:, 0] < 0.1, 0]
    threshold = float(max(0.15, np.percentile(rest_read, 99) + 0.03))
    report = {
        "command": command_line(seed, n_train, n_eval, steps, width),
        "seed": seed,
        "held_out_identities": "yes: evaluation renders use identities from a separate random stream",
        "n_train": n_train,
        "n_eval": n_eval,
        "mae": dict(zip(MOUTH_PARAMS, map(float, mae))),
        "correlation": dict(zip(MOUTH_PARAMS, corr)),
        "rest_jaw_read_p99": float(np.percentile(rest_read, 99)),
        "speaking_threshold": threshold,
        "train_seconds": round(seconds, 1),
    }
    save_reader(model, out, {"speaking_threshold": threshold, "command": report["command"], "mae": report["mae"]})
    results.mkdir(parents=True, exist_ok=True)
    (results / "mouth_reader.json").write_text(json.dumps(report, indent=2) + "\n")
    # one example per identity (the evaluation set renders 20 per identity)
    pick = list(range(0, len(eval_frames), 20))[:8]
    _plot_examples([eval_frames[i] for i in pick], pred[pick], y_eval[pick], results / "mouth_reader_examples.png")


def _plot_examples(frames, pred, true, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(frames), figsize=(2.2 * len(frames), 5.2))
    x = np.arange(len(MOUTH_PARAMS))
    for i, frame in enumerate(frames):
        axes[0, i].imshow(frame)
        axes[0, i].axis("off")
        axes[1, i].bar(x - 0.2, true[i], 0.4, label="true")
        axes[1, i].bar(x + 0.2, pred[i], 0.4, label="read")
        axes[1, i].set_xticks(x, MOUTH_PARAMS, rotation=90, fontsize=7)
        axes[1, i].set_ylim(0, 1)
        if i:
            axes[1, i].set_yticks([])
    axes[1, 0].legend(fontsize=7)
    fig.suptitle("Mouth reader on held-out identities: true vs read mouth parameters")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", type=int, default=12000, help="training renders")
    p.add_argument("--eval", type=int, default=1000, help="held-out renders (other identities)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--out", type=Path, default=WEIGHTS)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument(
        "--evaluate-only", action="store_true", help="re-score the weights at --out and recalibrate their threshold (no training)"
    )
    args = p.parse_args(argv)
    if args.evaluate_only:
        from .mouth_reader import LoadedReader

        x_eval, y_eval, eval_frames, _ = render_samples(args.seed * 1000 + 2, args.eval)
        previous = args.results / "mouth_reader.json"
        seconds = json.loads(previous.read_text()).get("train_seconds", 0.0) if previous.is_file() else 0.0
        model = LoadedReader(args.out).model
        evaluate(model, x_eval, y_eval, eval_frames, args.results, args.seed, args.train, args.eval, args.steps, model.width, args.out, seconds)
    else:
        train(args.seed, args.train, args.eval, args.steps, args.width, args.out, args.results)
    print((args.results / "mouth_reader.json").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
