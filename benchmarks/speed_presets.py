"""Quality and cost of the speed presets with the shipped small model on held-out synthetic clips.

    python benchmarks/speed_presets.py [--clips 10] [--presets quality fast fastest fast@2 fast+fp8]

Runs `keysync bench --method keysync --speed P` for each preset on the same rendered test clips (speakers
and sentences no model saw in training) in the three modes, then compares every preset with `quality`
clip by clip: sync (cross mode), LipLeak (silent), SSIM in the regenerated box (reconstruction), partial
cross-leak and mouth jitter. Writes benchmarks/results/speed_presets.md; each preset's per-clip numbers stay
in benchmarks/results/speed-presets/P/. A preset whose results exist is not run again (resume). ``P@N`` runs
preset P with ``--deep-cache N``, ``P+fp8`` with ``--fp8 emulate`` (also compared with P itself).

    python benchmarks/speed_presets.py --seed-floor

runs `quality` again at sampler seed 1 on the same clips (cross mode) into speed-presets/quality-seed1/:
how far two seeds of the same preset lie apart clip by clip, the floor any per-clip comparison sits on.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from keysync.diffusion.speed import evaluations_per_output_frame, stage_schedules

RESULTS = Path(__file__).resolve().parent / "results"
# (mode, metric, what the issue asks of a faster preset against quality, clip by clip)
CHECKS = (
    ("cross", "sync_corr", "within 0.02 of quality", lambda d, v: abs(d) <= 0.02),
    ("silent", "lipleak", "at most 0.05", lambda d, v: v <= 0.05),
    ("reconstruction", "ssim_mask", "within 0.01 of quality", lambda d, v: abs(d) <= 0.01),
    ("cross", "cross_leak_partial", "reported", None),
    ("cross", "mouth_jitter", "reported", None),
)


def parse_preset(preset: str) -> tuple[str, int, bool]:
    """``fast``, ``fast@2`` (the preset with ``--deep-cache 2``), ``fast+fp8`` (with ``--fp8 emulate``) ->
    (speed, deep cache, FP8)."""
    preset, fp8, _ = preset.partition("+fp8")
    speed, _, deep = preset.partition("@")
    return speed, int(deep or 1), bool(fp8)


def folder_name(preset: str) -> str:
    speed, deep, fp8 = parse_preset(preset)
    return speed + (f"-deep-cache-{deep}" if deep > 1 else "") + ("-fp8-emulated" if fp8 else "")


def run_preset(preset: str, clips: int, out: Path) -> float:
    if (out / "summary.json").exists():
        return json.loads((out / "seconds.json").read_text())["seconds"]
    speed, deep, fp8 = parse_preset(preset)
    argv = [sys.executable, "-m", "keysync.cli", "bench", "--method", "keysync", "--speed", speed, "--deep-cache", str(deep), "--clips", str(clips),
            "--out", str(out), "--json", str(out / "summary.json"), "--overwrite", *(["--fp8", "emulate"] if fp8 else [])]
    start = time.perf_counter()
    subprocess.run(argv, check=True)
    seconds = time.perf_counter() - start
    (out / "seconds.json").write_text(json.dumps({"seconds": seconds}))
    return seconds


def per_clip(folder: Path) -> dict[tuple[str, str], dict[str, float]]:
    with (folder / "per_clip.csv").open() as f:
        return {(r["mode"], r["clip"]): {k: float(v) for k, v in r.items() if k not in ("mode", "clip") and v != ""} for r in csv.DictReader(f)}


def compare(base: dict, other: dict) -> list[str]:
    lines = []
    for mode, metric, rule, ok in CHECKS:
        keys = sorted(k for k in base if k[0] == mode and k in other and metric in base[k] and metric in other[k])
        a = np.array([base[k][metric] for k in keys])
        b = np.array([other[k][metric] for k in keys])
        keep = np.isfinite(a) & np.isfinite(b)
        a, b = a[keep], b[keep]
        if len(a) < 2:
            continue
        d = b - a
        se = d.std(ddof=1) / np.sqrt(len(d))
        verdict = "-" if ok is None else f"{sum(ok(x, v) for x, v in zip(d, b))} of {len(d)} clips"
        lines.append(f"| {mode} | {metric} | {a.mean():.3f} | {b.mean():.3f} | {d.mean():+.4f} +- {se:.4f} | {np.abs(d).max():.4f} | {rule} | {verdict} |")
    return lines


def seed_floor(root: Path) -> None:
    from keysync.bench.methods import KeySyncMethod
    from keysync.bench.runner import benchmark_data, run_benchmark, write_results

    records = benchmark_data(root / "quality" / "data", 10, 0, 256)
    with tempfile.TemporaryDirectory() as work:
        result = run_benchmark(KeySyncMethod(speed="quality", seed=1), records, Path(work), modes=("cross",), progress=False)
    write_results(root / "quality-seed1", "keysync", result)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--presets", nargs="+", default=["quality", "fast", "fastest"])
    parser.add_argument("--seed-floor", action="store_true", help="also run quality at sampler seed 1 (cross mode)")
    args = parser.parse_args()
    root = RESULTS / "speed-presets"
    if args.seed_floor and not (root / "quality-seed1" / "per_clip.csv").exists():
        seed_floor(root)
    seconds = {p: run_preset(p, args.clips, root / folder_name(p)) for p in args.presets}
    clips = {p: per_clip(root / folder_name(p)) for p in args.presets}
    lines = [
        "# Speed presets: cost and quality (shipped small model, synthetic test clips)",
        "",
        f"`python benchmarks/speed_presets.py --clips {args.clips}`: {args.clips} held-out clips in three modes per preset. "
        f"Machine: {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, no GPU. Wall time includes "
        "tracking, the mouth reader and scoring, and the machine was shared, so compare the evaluation counts, not the seconds "
        "(each preset's seconds are from the run that made its results, which may have been on another machine).",
        "",
        "`P@N` is preset P with `--deep-cache N`: the networks' deep levels run on one step in N; the other "
        "evaluations run only the full-resolution level, 22 % of a whole evaluation's FLOPs for the small model "
        "(37 % at official size). `P+fp8` is preset P with `--fp8 emulate`: the rounding of FP8 matmuls (e4m3, a "
        "scale per row of activations and of weights) in every linear layer of both networks, emulated in float32 "
        "on the CPU (slower there than P, not faster); what FP8 gains in speed needs a GPU with FP8 tensor cores "
        "and is not measured here.",
        "",
        "| preset | keyframe steps (guided) | interpolation steps (guided) | evaluations per output frame | of them whole | bench wall time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for p in args.presets:
        speed, deep, _ = parse_preset(p)
        k, i = stage_schedules(speed, None, deep)
        lines.append(f"| {p} | {k.steps} ({k.guided}) | {i.steps} ({i.guided}) | {evaluations_per_output_frame(k, i):.1f} "
                     f"| {evaluations_per_output_frame(k, i, whole_only=True):.1f} | {seconds[p]:.0f} |")
    if (root / "quality-seed1" / "per_clip.csv").exists() and "quality" in clips:
        lines += ["", "## quality at sampler seed 1 against seed 0, clip by clip (the floor of a per-clip comparison)", "",
                  "| mode | metric | seed 0 | seed 1 | difference (mean +- s.e.) | largest difference | asked of a preset | clips that meet it |",
                  "|---|---|---|---|---|---|---|---|", *compare(clips["quality"], per_clip(root / "quality-seed1"))[:1]]
    for p in args.presets:
        if p == "quality" or "quality" not in clips:
            continue
        lines += ["", f"## {p} against quality, clip by clip", "",
                  "| mode | metric | quality | " + p + " | difference (mean +- s.e.) | largest difference | asked | clips that meet it |",
                  "|---|---|---|---|---|---|---|---|", *compare(clips["quality"], clips[p])]
        plain = p.partition("+fp8")[0]
        if plain != p and plain in clips:  # FP8's own effect: the same schedule, seed and clips without it
            lines += ["", f"## {p} against {plain}, clip by clip (FP8's own effect)", "",
                      f"| mode | metric | {plain} | {p} | difference (mean +- s.e.) | largest difference | asked of a preset (against quality) | clips that meet it |",
                      "|---|---|---|---|---|---|---|---|", *compare(clips[plain], clips[p])]
    (RESULTS / "speed_presets.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
