"""Speed and memory of the real-footage front end on 1080p input (run by hand, not a test).

    python benchmarks/frontend_speed.py [--seconds 10 60] [--preset medium]

For each length it renders a 1920x1080, 25 fps clip of a real face (skimage's astronaut, moving) with a
16 kHz soundtrack, then, in a fresh process per clip, runs the front end the way dubbing will:
pass 1 decode + detect/track + landmarks, then crop planning, pass 2 decode + crop + box mask +
paste-back (of the unmodified crop) + H.264/AAC encode. A decode-only pass is timed as a floor.
Peak memory is the work process's maximum resident set size. Writes benchmarks/results/frontend_speed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
WIDTH, HEIGHT, FPS = 1920, 1080, 25


def make_clip(path: Path, seconds: int) -> None:
    """Astronaut on a grey 1080p canvas, drifting and zooming with a 4 s period, plus a tone track."""
    import cv2
    import numpy as np
    from skimage import data

    from keysync.media import VideoWriter

    photo = data.astronaut()
    n = seconds * FPS
    t = np.arange(seconds * 16000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * (220 + 40 * np.sin(2 * np.pi * t)) * t)).astype(np.float32)
    with VideoWriter(path, WIDTH, HEIGHT, rate=FPS, audio=audio, crf=18, preset="ultrafast") as out:
        for k in range(n):
            phase = 2 * np.pi * k / (4 * FPS)
            s = 900 / 512 * (1 + 0.05 * np.sin(phase))
            tx = WIDTH / 2 - 256 * s + 120 * np.sin(phase)
            ty = HEIGHT / 2 - 256 * s + 40 * np.cos(phase)
            out.write(cv2.warpAffine(photo, np.float32([[s, 0, tx], [0, s, ty]]), (WIDTH, HEIGHT), borderValue=(96, 96, 96)))


def work(clip: Path, preset: str) -> dict:
    """One clip through the front end; returns timings (s), frame count and peak RSS (MiB)."""
    from keysync.faces.backends import load_backend
    from keysync.faces.crops import plan_crops
    from keysync.faces.render import render_through_crops
    from keysync.faces.tracking import select_target, track_faces
    from keysync.media import read_frames

    timings = {}
    start = time.perf_counter()
    frames = sum(1 for _ in read_frames(clip))
    timings["decode"] = time.perf_counter() - start

    start = time.perf_counter()
    result = track_faces(read_frames(clip), load_backend("mediapipe"))
    target = select_target(result)
    crops = plan_crops(target, result.times, size=512)
    timings["track"] = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        render_through_crops(clip, Path(folder) / "out.mp4", target, crops, preset=preset)
        timings["render"] = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"frames": frames, "present": int(target.present.sum()), "timings": timings, "peak_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, nargs="+", default=[10, 60])
    parser.add_argument("--preset", default="medium", help="x264 preset for the output (the writer's default: medium)")
    parser.add_argument("--work", nargs=2, metavar=("CLIP", "PRESET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.work:
        print(json.dumps(work(Path(args.work[0]), args.work[1])))
        return

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for seconds in args.seconds:
            clip = Path(folder) / f"clip_{seconds}s.mp4"
            subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                            f"import frontend_speed as b; from pathlib import Path; b.make_clip(Path({str(clip)!r}), {seconds})"], check=True)
            out = subprocess.run([sys.executable, __file__, "--work", str(clip), args.preset], check=True, capture_output=True, text=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["seconds"] = seconds
            rows.append(row)
            print(row, flush=True)
    write_report(rows, args.preset)


def write_report(rows: list[dict], preset: str) -> None:
    import av
    import mediapipe

    lines = [
        "# Front-end speed and memory (1080p)",
        "",
        "`python benchmarks/frontend_speed.py` on this project's build machine: "
        f"{os.cpu_count()} CPU cores, no GPU, Python {platform.python_version()}, PyAV {av.__version__}, "
        f"mediapipe {mediapipe.__version__}. Input: 1920x1080, 25 fps H.264 clip of a real face "
        "(skimage astronaut, moving and zooming) with 16 kHz audio. Output: H.264 crf 18, "
        f"preset `{preset}`, + AAC, at the input's size and timestamps. Crops: 512 px, box mask, feathered paste-back.",
        "",
        "| clip | frames | face found | decode only (fps) | pass 1: decode + track + landmarks (fps) | "
        "pass 2: decode + crop + mask + paste + encode (fps) | whole front end (fps) | peak memory (MiB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t, n = r["timings"], r["frames"]
        lines.append(
            f"| {r['seconds']} s | {n} | {r['present']} | {n / t['decode']:.1f} | {n / t['track']:.1f} | "
            f"{n / t['render']:.1f} | {n / (t['track'] + t['render']):.1f} | {r['peak_mib']:.0f} |"
        )
    if len(rows) >= 2:
        ratio = rows[-1]["peak_mib"] / rows[0]["peak_mib"]
        lines += ["", f"Peak memory, {rows[-1]['seconds']} s vs {rows[0]['seconds']} s: {ratio:.2f}x (goal: at most 1.2x)."]
    lines += [
        "",
        "Whole front end = pass 1 + pass 2 (the decode-only column is a floor, not part of the sum). The encoder "
        "dominates pass 2: libx264 at 1080p on 2 cores runs at about 6 fps with preset medium and 10 fps with "
        "veryfast (`VideoWriter(preset=...)`). Memory stays flat because frames are decoded, processed and "
        "encoded one at a time; what grows with length is the per-frame landmark table (68x2 floats per face "
        "per frame) and the decoded soundtrack.",
        "",
        f"Load average over the last 5 minutes when the run ended: {os.getloadavg()[1]:.1f} (the machine is shared; "
        "with a load average above its 2 cores, these fps understate an idle machine's; memory is unaffected).",
        "",
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "frontend_speed.md").write_text("\n".join(lines))
    print(f"wrote {RESULTS / 'frontend_speed.md'}")


if __name__ == "__main__":
    main()
