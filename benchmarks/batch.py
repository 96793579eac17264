"""`keysync batch` throughput: jobs and output seconds per hour with 1 and 2 local workers, against the same
jobs as separate `keysync dub` runs (each starting Python, importing torch and loading the model again).

    python benchmarks/batch.py --jobs 8 --frames 14 --steps 1
    python benchmarks/batch.py --split-long 14 --seconds 30 --steps 1

The second form checks ``--split-long``: one long clip dubbed whole by ``keysync dub`` (seeds 0 and 1) and
split into pieces by ``keysync batch --workers 2``; it compares the joined output's frames at the joins
with the unsplit output's, against how much two seeds differ elsewhere, and the frame counts, durations
and soundtrack lengths.

Dubs short clips (a real face photo with head motion, tests/faces_media_clips.py) with the shipped small
model; every run is a fresh `keysync` process, as a user runs it. Also measures, in fresh processes, what
one process pays before its first dub (interpreter, imports, model load), which batch pays once per
worker instead of once per job. Results are appended to benchmarks/results/batch.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "batch.md"
STARTUP = ("import time; t = time.perf_counter(); from keysync import KeySyncPipeline; "
           "from keysync.models.model import shipped_model_dir; imported = time.perf_counter() - t; "
           "KeySyncPipeline.from_pretrained(shipped_model_dir()); print(imported, time.perf_counter() - t - imported)")


def make_jobs(folder: Path, jobs: int, frames: int, steps: int) -> Path:
    sys.path.insert(0, str(ROOT))
    from tests.faces_media_clips import astronaut, moving_frames, tone, write_clip, write_wav

    write_wav(folder / "speech.mp4", tone(frames / 25))
    rows = ["video,audio,steps,seed"]
    for i in range(jobs):
        write_clip(folder / f"clip{i}.mp4", moving_frames(astronaut(), 160, 120, frames, photo_height=110, amplitude=5 + 3 * i), rate=25)
        rows.append(f"clip{i}.mp4,speech.mp4,{steps},{i}")
    (folder / "jobs.csv").write_text("\n".join(rows) + "\n")
    return folder / "jobs.csv"


def keysync(*args: str) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    clock = time.perf_counter()
    subprocess.run([sys.executable, "-m", "keysync.cli", *args], check=True, env=env, capture_output=True)
    return time.perf_counter() - clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--frames", type=int, default=14, help="frames per clip (25 fps; 14 is one sampling window)")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--split-long", type=float, help="check --split-long S on one clip of --seconds instead")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--crf", type=int, default=17, help="the outputs' H.264 quality (0: lossless, so that the decoded frames are the dubbed ones)")
    args = parser.parse_args()
    if args.split_long:
        return split_long(args)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = make_jobs(tmp, args.jobs, args.frames, args.steps)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        startup = [json.loads("[" + subprocess.run([sys.executable, "-c", STARTUP], env=env, capture_output=True, text=True,
                                                 check=True).stdout.strip().replace(" ", ",") + "]") for _ in range(2)]
        walls = {}
        for workers in (1, 2):
            walls[f"batch, {workers} worker(s)"] = keysync("batch", str(manifest), "-o", str(tmp / f"out{workers}"),
                                                           "--workers", str(workers), "--quiet")
        walls["separate keysync dub runs"] = sum(
            keysync("dub", str(tmp / f"clip{i}.mp4"), str(tmp / "speech.mp4"), "-o", str(tmp / f"dub{i}.mp4"),
                    "--steps", str(args.steps), "--seed", str(i), "--quiet")
            for i in range(args.jobs))
        same = all((tmp / "out2" / f"clip{i}.mp4").read_bytes() == (tmp / "out1" / f"clip{i}.mp4").read_bytes() for i in range(args.jobs))
    seconds = args.jobs * args.frames / 25
    imported, loaded = (min(s[k] for s in startup) for k in (0, 1))
    lines = [f"## {time.strftime('%Y-%m-%d %H:%M')}: {args.jobs} jobs of {args.frames} frames (160x120, {seconds / args.jobs:.2f} s), "
             f"shipped small model, steps {args.steps}, CPU, {os.cpu_count()} cores, load average {load_before:.1f} before",
             "", "| run | wall (s) | jobs per hour | output seconds per hour |", "|---|---|---|---|"]
    for name, wall in walls.items():
        lines.append(f"| {name} | {wall:.1f} | {args.jobs / wall * 3600:.0f} | {seconds / wall * 3600:.0f} |")
    separate, one = walls["separate keysync dub runs"], walls["batch, 1 worker(s)"]
    lines += ["", f"- one process before its first dub: {imported:.1f} s importing keysync and torch + {loaded:.1f} s loading "
              f"the model (fastest of 2 fresh processes); separate runs pay it {args.jobs} times "
              f"({args.jobs * (imported + loaded):.0f} s), batch once per worker",
              f"- batch with 1 worker saved {separate - one:.1f} s of {separate:.1f} s against separate `keysync dub` runs "
              f"({(separate - one) / separate:.0%})",
              f"- outputs of the 1- and 2-worker runs byte-identical: {same}", ""]
    text = "\n".join(lines)
    print(text)
    if not RESULTS.exists():
        RESULTS.write_text("# keysync batch throughput\n\nMade with `benchmarks/batch.py` (see its docstring).\n\n")
    with open(RESULTS, "a") as f:
        f.write(text + "\n")


def split_long(args) -> None:
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from keysync.media.audio import load_audio
    from keysync.media.source import VideoSource
    from keysync.media.video import probe_video
    from tests.faces_media_clips import astronaut, moving_frames, tone, write_clip, write_wav

    load_before = os.getloadavg()[0]
    frames = int(args.seconds * 25)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_wav(tmp / "speech.mp4", tone(args.seconds))
        write_clip(tmp / "long.mp4", moving_frames(astronaut(), 320, 240, frames, photo_height=220, amplitude=10), rate=25)
        (tmp / "jobs.csv").write_text(f"video,audio,steps,seed,crf\nlong.mp4,speech.mp4,{args.steps},0,{args.crf}\n")
        walls = {}
        for seed in (0, 1):
            walls[f"keysync dub, seed {seed}"] = keysync("dub", str(tmp / "long.mp4"), str(tmp / "speech.mp4"), "-o",
                                                         str(tmp / f"seed{seed}.mp4"), "--steps", str(args.steps), "--seed",
                                                         str(seed), "--model", "small", "--crf", str(args.crf), "--quiet")
        walls[f"keysync batch --split-long {args.split_long:g} --workers 2, seed 0"] = keysync(
            "batch", str(tmp / "jobs.csv"), "-o", str(tmp / "out"), "--model", "small", "--workers", "2", "--split-long",
            str(args.split_long), "--quiet")
        journal = [json.loads(line) for line in (tmp / "out.keysync-batch" / "journal.jsonl").read_text().splitlines()]
        pieces = next(r["pieces"] for r in journal if r["status"] == "done" and r.get("pieces"))
        decode = {name: np.stack([f.image for f in VideoSource(path).frames()]).astype(np.int16)
                  for name, path in (("whole", tmp / "seed0.mp4"), ("seed1", tmp / "seed1.mp4"), ("split", tmp / "out" / "long.mp4"))}
        infos = {name: probe_video(path) for name, path in (("whole", tmp / "seed0.mp4"), ("split", tmp / "out" / "long.mp4"))}
        audio = {name: len(load_audio(path)) / 16000 for name, path in (("whole", tmp / "seed0.mp4"), ("split", tmp / "out" / "long.mp4"))}
    # the frame where each piece after the first starts: windows of 169 model frames, the first making 157
    joins = [157 + 169 * (first - 1) for first, _ in pieces[1:]]
    near = np.zeros(frames, bool)
    for j in joins:
        near[max(0, j - 2): j + 2] = True
    split_diff = np.abs(decode["split"] - decode["whole"]).mean(axis=(1, 2, 3))
    seed_diff = np.abs(decode["seed1"] - decode["whole"]).mean(axis=(1, 2, 3))
    lines = [f"## {time.strftime('%Y-%m-%d %H:%M')}: --split-long {args.split_long:g} on a {args.seconds:g} s clip (320x240, "
             f"{frames} frames), shipped small model, steps {args.steps}, crf {args.crf}, CPU, {os.cpu_count()} cores, "
             f"load average {load_before:.1f} before", "",
             f"Pieces (sampling windows): {pieces}; joins at output frames {joins}.", "",
             "| mean absolute difference per frame (8-bit levels, whole frame) | mean | largest |", "|---|---|---|",
             f"| split against unsplit, at the joins (2 frames each side) | {split_diff[near].mean():.3f} | {split_diff[near].max():.3f} |",
             f"| split against unsplit, elsewhere | {split_diff[~near].mean():.3f} | {split_diff[~near].max():.3f} |",
             f"| seed 1 against seed 0 (both unsplit), elsewhere | {seed_diff[~near].mean():.3f} | {seed_diff[~near].max():.3f} |", "",
             f"- frames: unsplit {infos['whole'].frame_count}, split {infos['split'].frame_count}; durations {infos['whole'].duration:.3f} s "
             f"and {infos['split'].duration:.3f} s; soundtracks {audio['whole']:.3f} s and {audio['split']:.3f} s", ""]
    lines += ["| run | wall (s) |", "|---|---|"] + [f"| {name} | {wall:.1f} |" for name, wall in walls.items()] + [""]
    text = "\n".join(lines)
    print(text)
    with open(RESULTS, "a") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
