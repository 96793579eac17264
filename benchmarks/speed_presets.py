"""Quality and cost of the speed presets with the shipped small model on held-out synthetic clips.

    python benchmarks/speed_presets.py [--clips 10] [--presets quality fast fastest fast@2 fast+fp8 fast+bf16]

Runs `keysync bench --method keysync --speed P` for each preset on the same rendered test clips (speakers
and sentences no model saw in training) in the three modes, then compares every preset with `quality`
clip by clip: sync (cross mode), LipLeak (silent), SSIM in the regenerated box (reconstruction), partial
cross-leak and mouth jitter. Writes benchmarks/results/speed_presets.md; each preset's per-clip numbers stay
in benchmarks/results/speed-presets/P/. A preset whose results exist is not run again (resume). ``P@N`` runs
preset P with ``--deep-cache N``, ``P+fp8`` with ``--fp8 emulate`` and ``P+bf16`` with ``--dtype bfloat16`` (both also
compared with P itself).

    python benchmarks/speed_presets.py --seeds 8 --seeded quality fast

also runs the ``--seeded`` presets at sampler seeds 1..7 on the same clips (cross mode) into
speed-presets/P-seedK/ and compares each clip's sync averaged over the seeds. The default (``--seeds 2``)
runs `quality` at seed 1 only: how far two seeds of the same preset lie apart clip by clip, the floor any
one-seed per-clip comparison sits on.
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


VARIANTS = {  # P+V: preset P with these bench options, results in the folder P-suffix
    "fp8": (["--fp8", "emulate"], {"fp8": "emulate"}, "-fp8-emulated"),
    "bf16": (["--dtype", "bfloat16"], {"dtype": "bfloat16"}, "-bfloat16"),
}


def parse_preset(preset: str) -> tuple[str, int, str]:
    """``fast``, ``fast@2`` (the preset with ``--deep-cache 2``), ``fast+fp8`` (with ``--fp8 emulate``),
    ``fast+bf16`` (with ``--dtype bfloat16``) -> (speed, deep cache, variant or "")."""
    preset, _, variant = preset.partition("+")
    if variant and variant not in VARIANTS:
        raise SystemExit(f"{preset}+{variant}: the variants are {', '.join(VARIANTS)}")
    speed, _, deep = preset.partition("@")
    return speed, int(deep or 1), variant


def folder_name(preset: str) -> str:
    speed, deep, variant = parse_preset(preset)
    return speed + (f"-deep-cache-{deep}" if deep > 1 else "") + (VARIANTS[variant][2] if variant else "")


def run_preset(preset: str, clips: int, out: Path) -> float:
    if (out / "summary.json").exists():
        return json.loads((out / "seconds.json").read_text())["seconds"]
    speed, deep, variant = parse_preset(preset)
    argv = [sys.executable, "-m", "keysync.cli", "bench", "--method", "keysync", "--speed", speed, "--deep-cache", str(deep), "--clips", str(clips),
            "--out", str(out), "--json", str(out / "summary.json"), "--overwrite", *(VARIANTS[variant][0] if variant else [])]
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


def seed_runs(root: Path, presets: list[str], seeds: int, clips: int) -> None:
    """Cross mode at sampler seeds 1 .. seeds-1 of each preset (seed 0 is its own run), on the same clips
    and speech, into speed-presets/P-seedK/; a folder with results is kept (resume)."""
    from keysync.bench.methods import KeySyncMethod
    from keysync.bench.runner import benchmark_data, run_benchmark, write_results

    records = benchmark_data(root / "quality" / "data", clips, 0, 256)
    for preset in presets:
        speed, deep, variant = parse_preset(preset)
        for seed in range(1, seeds):
            out = root / f"{folder_name(preset)}-seed{seed}"
            if (out / "per_clip.csv").exists():
                continue
            method = KeySyncMethod(speed=speed, seed=seed, deep_cache=deep, **(VARIANTS[variant][1] if variant else {}))
            with tempfile.TemporaryDirectory() as work:
                result = run_benchmark(method, records, Path(work), modes=("cross",), progress=False)
            write_results(out, "keysync", result)


def seed_sync(root: Path, preset: str, seeds: range) -> dict[str, np.ndarray]:
    """Per clip: cross-mode sync at each of ``seeds`` (0 is the preset's own run)."""
    runs = [per_clip(root / (folder_name(preset) + (f"-seed{k}" if k else ""))) for k in seeds]
    return {clip: np.array([run[("cross", clip)]["sync_corr"] for run in runs]) for mode, clip in runs[0] if mode == "cross"}


def compare_seed_means(base: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> tuple[str, list[str]]:
    """Sync averaged over seeds, clip by clip: (a summary row, a row per clip with its standard errors)."""
    clips = sorted(base)
    d = np.array([other[c].mean() - base[c].mean() for c in clips])
    se = [np.sqrt(base[c].var(ddof=1) / len(base[c]) + other[c].var(ddof=1) / len(other[c])) for c in clips]
    rows = [f"| {c} | {base[c].mean():.3f} | {other[c].mean():.3f} | {x:+.4f} +- {e:.4f} |" for c, x, e in zip(clips, d, se)]
    summary = (f"{d.mean():+.4f} +- {d.std(ddof=1) / np.sqrt(len(d)):.4f} | {np.abs(d).max():.4f} | "
               f"{int((np.abs(d) <= 0.02).sum())} of {len(d)} clips | {int((d >= -0.02).sum())} of {len(d)} clips")
    return summary, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--presets", nargs="+", default=["quality", "fast", "fastest"])
    parser.add_argument("--seeds", type=int, default=2, help="sampler seeds per clip of the --seeded presets in cross mode "
                        "(default 2: quality's second seed, the floor of a one-seed comparison)")
    parser.add_argument("--seeded", nargs="+", default=["quality"], help="presets run at every --seeds seed (quality first)")
    args = parser.parse_args()
    root = RESULTS / "speed-presets"
    seed_runs(root, args.seeded, args.seeds, args.clips)
    seconds = {p: run_preset(p, args.clips, root / folder_name(p)) for p in args.presets}
    clips = {p: per_clip(root / folder_name(p)) for p in args.presets}
    lines = [
        "# Speed presets: cost and quality (shipped small model, synthetic test clips)",
        "",
        f"`python benchmarks/speed_presets.py --clips {args.clips} --presets {' '.join(args.presets)}"
        + (f" --seeds {args.seeds} --seeded {' '.join(args.seeded)}" if args.seeds > 2 else "") + f"`: {args.clips} held-out clips in three modes per preset. "
        f"Machine: {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, no GPU. Wall time includes "
        "tracking, the mouth reader and scoring, and the machine was shared, so compare the evaluation counts, not the seconds "
        "(each preset's seconds are from the run that made its results, which may have been on another machine).",
        "",
        "`P@N` is preset P with `--deep-cache N`: the networks' deep levels run on one step in N; the other "
        "evaluations run only the full-resolution level, 22 % of a whole evaluation's FLOPs for the small model "
        "(37 % at official size). `P+fp8` is preset P with `--fp8 emulate`: the rounding of FP8 matmuls (e4m3, a "
        "scale per row of activations and of weights) in every linear layer of both networks, emulated in float32 "
        "on the CPU (slower there than P, not faster); what FP8 gains in speed needs a GPU with FP8 tensor cores "
        "and is not measured here. `P+bf16` is preset P with `--dtype bfloat16`: the networks in bfloat16 on the CPU, "
        "the sampler's state in float32.",
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
    if args.seeds > 2 and args.seeded[0] == "quality":
        n, half = args.seeds, args.seeds // 2
        floor, _ = compare_seed_means(seed_sync(root, "quality", range(0, n, 2)), seed_sync(root, "quality", range(1, n, 2)))
        base = seed_sync(root, "quality", range(n))
        lines += ["", f"## sync clip by clip, each clip's mean over {n} sampler seeds (cross mode)", "",
                  f"A preset's sync on a clip moves with the sampler's seed (above: up to 0.045 between two seeds of `quality`), "
                  f"so here each clip's sync is its mean over seeds 0-{n - 1}, for `quality` and each preset, and the difference "
                  f"of the two means is given with its standard error (from the seeds' spread). The floor is `quality` against "
                  f"itself, {half} seeds (even) against {half} others (odd); a mean over {n} seeds lies closer, by about "
                  f"sqrt(2), to its own limit.", "",
                  "| comparison | difference (mean +- s.e. over clips) | largest difference | clips within 0.02 | clips not lower by more than 0.02 |",
                  "|---|---|---|---|---|",
                  f"| quality, {half} seeds against {half} others (floor) | {floor} |"]
        per_clip_rows = []
        for p in args.seeded[1:]:
            summary, rows = compare_seed_means(base, seed_sync(root, p, range(n)))
            lines.append(f"| {p} against quality, {n} seeds each | {summary} |")
            per_clip_rows += ["", f"{p} against quality, clip by clip ({n} seeds each):", "",
                              f"| clip | quality | {p} | difference +- s.e. |", "|---|---|---|---|", *rows]
        lines += per_clip_rows
    for p in args.presets:
        if p == "quality" or "quality" not in clips:
            continue
        lines += ["", f"## {p} against quality, clip by clip", "",
                  "| mode | metric | quality | " + p + " | difference (mean +- s.e.) | largest difference | asked | clips that meet it |",
                  "|---|---|---|---|---|---|---|---|", *compare(clips["quality"], clips[p])]
        plain, _, variant = p.partition("+")
        if variant and plain in clips:  # the variant's own effect: the same schedule, seed and clips without it
            lines += ["", f"## {p} against {plain}, clip by clip ({variant}'s own effect)", "",
                      f"| mode | metric | {plain} | {p} | difference (mean +- s.e.) | largest difference | asked of a preset (against quality) | clips that meet it |",
                      "|---|---|---|---|---|---|---|---|", *compare(clips[plain], clips[p])]
    (RESULTS / "speed_presets.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
