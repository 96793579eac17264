"""`keysync eval` on the synthetic benchmark's outputs: the shipped small model, copy and oracle.

    OMP_NUM_THREADS=1 python benchmarks/eval_bench.py --clips 5 [--screenshot docs/eval-report.png]

Renders the benchmark's held-out clips (seed 0, 256x256, as `keysync bench` renders them), runs each method
on them in cross and silent modes through `keysync.bench.run_benchmark`, and scores every output in memory
with `keysync.eval.score.score_frames`: the frames the method returned (before any video encoding) against
the source's decoded frames and the driving audio, the face found by the MediaPipe front end, as on a real
video. Beside eval's LipLeak (landmarks, silence from the audio) it computes the synthetic world's own
LipLeak on the same output and the same silent frames: the benchmark's mouth reader with its calibrated
threshold (in silent mode this is `keysync bench`'s `lipleak`), and, for copy and oracle, the output's exact
landmarks with eval's rule.

Writes benchmarks/results/eval_bench.json (every clip's numbers), a section of benchmarks/results/eval.md
(replaced on a rerun; the rest of the file is kept) and benchmarks/results/eval-report/, `keysync eval`'s
report page for the small model in cross mode; with --screenshot, a picture of that page (headless chromium).

No SyncNet weights are on this machine, so LSE-C / LSE-D are not computed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from keysync.bench import metrics as M
from keysync.bench.methods import get_method
from keysync.bench.mouth_reader import LoadedReader
from keysync.bench.runner import benchmark_data, run_benchmark
from keysync.errors import KeySyncError
from keysync.eval.report import COLUMNS, write_report
from keysync.eval.score import METRICS, ClipResult, score_frames, summarise

RESULTS = Path(__file__).resolve().parent / "results"
SECTION = "## keysync eval on the synthetic benchmark's outputs"
METHODS = ("copy", "oracle", "keysync")
SYNCNET_METRICS = ("lse_d", "lse_c", "av_offset")
WHY_NO_SYNCNET = ("no released SyncNet weights are on this machine (syncnet_v2.model cannot be downloaded here), and "
                  "scores from random weights would mean nothing")


def _mean_interval(values) -> tuple[float, float, float, int]:
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if len(v) < 2:
        return (float(v[0]) if len(v) else math.nan), math.nan, math.nan, len(v)
    if v.std() == 0:
        return float(v[0]), float(v[0]), float(v[0]), len(v)
    low, high = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    return float(v.mean()), float(low), float(high), len(v)


def _cell(values) -> str:
    mean, low, high, n = _mean_interval(values)
    if n == 0:
        return "-"
    return f"{mean:.3g}" if not math.isfinite(low) or low == high else f"{mean:.3g} [{low:.3g}, {high:.3g}]"


def run(n_clips: int, modes: tuple[str, ...], work: Path, extra=None) -> dict:
    """{method: {"seconds": s, "clips": [{clip, mode, eval: {...}, synthetic: {...}}]}, plus the eval results
    of keysync in cross mode (``ClipResult``s) under "_report"}. ``extra(method, record, mode, output, audio,
    source_frames, row)`` is called on each output too."""
    records = benchmark_data(work / "data", n_clips, seed=0, size=256)
    reader = LoadedReader()
    threshold = float(reader.metadata["speaking_threshold"])
    out: dict = {"_report": []}
    for name in METHODS:
        method = get_method(name)
        clips = []

        def score(record, mode, output, audio, source_frames, row, name=name, clips=clips):
            try:
                result = score_frames(output.frames, audio, fps=25, source_frames=source_frames)
            except KeySyncError as err:  # no face found: one line, the clip stays out of eval's numbers
                print(f"{name} {record.name} {mode}: {err}", flush=True)
                result = ClipResult(record.name, error=str(err))
            result.name = record.name
            if name == "keysync" and mode == "cross":
                out["_report"].append(result)
            truth = record.truth()
            valid = M.readable_frames(truth["landmarks"], truth["occluder"])
            silent = M.silent_frames(audio, len(output.frames))
            read = reader.read(output.frames, truth["landmarks"])[:, 0]
            synthetic = {"lipleak_reader": M.lipleak(read, silent, threshold, valid)}
            if output.landmarks is not None:
                mar = np.nan_to_num(M.mouth_aspect_ratio(output.landmarks))
                synthetic["lipleak_exact_landmarks"] = M.lipleak(mar, silent, M.SPEAKING_MAR, valid)
            synthetic["silent_frames"] = int(silent.sum())
            synthetic["occluded_frames"] = int((~valid).sum())
            bench = {k: row[k] for k in ("lipleak", "lipleak_lm", "ssim_mask", "psnr_outside", "ssim_outside") if k in row}
            clips.append({"clip": record.name, "mode": mode, "frames": len(output.frames), "error": result.error,
                          "eval": {m: v for m, v in result.values.items() if math.isfinite(v)},
                          "synthetic": synthetic, "bench": bench})
            if extra is not None:
                extra(name, record, mode, output, audio, source_frames, row)

        start = time.perf_counter()
        run_benchmark(method, records, work / name, modes=modes, on_output=score)
        out[name] = {"seconds": round(time.perf_counter() - start, 1), "clips": clips}
        print(f"{name}: {len(clips)} outputs in {out[name]['seconds']:.0f} s", flush=True)
    return out


def section(data: dict, n_clips: int, modes: tuple[str, ...], wall: float, load: float) -> list[str]:
    shown = [m for m in METRICS if m not in SYNCNET_METRICS and any(m in c["eval"] for k in METHODS for c in data[k]["clips"])]
    absent = [m for m in METRICS if m not in SYNCNET_METRICS and m not in shown]
    lines = [
        SECTION, "",
        f"`OMP_NUM_THREADS=1 python benchmarks/eval_bench.py --clips {n_clips}`: {n_clips} held-out clips of the synthetic "
        f"world (`keysync bench`'s rendering: seed 0, 256x256, test identities and sentences), each dubbed in "
        f"{' and '.join(modes)} mode by copy (returns the source), oracle (re-renders the source with the mouth the "
        "new audio asks for) and keysync (the shipped small model, `keysync bench`'s settings). Each output is scored "
        "by `keysync.eval.score.score_frames` in memory, on the frames the method returned (no video encoding), "
        "against the source's decoded frames and the driving audio; the face and its landmarks come from the "
        "MediaPipe front end, as on a real video. "
        f"Machine: 2 shared x86 cores (load average {load:.0f} at the start), one thread; {wall / 60:.1f} min in all "
        "(" + ", ".join(f"{k} {data[k]['seconds']:.0f} s" for k in METHODS) + ", dubbing and scoring).",
        "",
        f"LSE-C, LSE-D and the AV offset are not in the table: {WHY_NO_SYNCNET}."
        + (f" Not computed either: {', '.join(absent)} (no weights or inputs for them here)." if absent else ""),
        "",
        "Mean over the clips [95 % interval of the mean, Student's t]:",
        "",
        "| method | mode | " + " | ".join(COLUMNS.get(m, m) for m in shown)
        + " | LipLeak, synthetic (reader) | LipLeak, synthetic (exact landmarks) |",
        "|---|---|" + "---|" * (len(shown) + 2),
    ]
    for k in METHODS:
        for mode in modes:
            clips = [c for c in data[k]["clips"] if c["mode"] == mode]
            cells = [_cell([c["eval"].get(m) for c in clips]) for m in shown]
            cells += [_cell([c["synthetic"].get(s) for c in clips]) for s in ("lipleak_reader", "lipleak_exact_landmarks")]
            lines.append(f"| {k} | {mode} | " + " | ".join(cells) + " |")
    lines += [
        "",
        ("LipLeak columns. *eval*: `keysync eval`'s, on real-video terms: the inner-lip aspect ratio of the landmarks "
        "MediaPipe finds on the output, above 0.08 (maxed over 7 frames) in the driving audio's silent frames "
        "(RMS under -45 dBFS). *synthetic (reader)*: the benchmark's mouth reader on the same output and the same "
        "silent frames, with its calibrated threshold, leaving out frames an occluder hides (in silent mode this is "
        "`keysync bench`'s `lipleak`). *synthetic (exact landmarks)*: eval's rule on the landmarks the renderer "
        "drew (copy and oracle only). Eval does not know about occluders: it reads whatever landmarks MediaPipe "
        "finds behind one. In cross mode the silent frames are the new speech's pauses, on these 2.5 s clips "
        "mostly 1 to 5 frames between words, which the 7-frame window counts as speaking: there even the "
        "oracle's LipLeak is high, and the cross rows say little about leaks."),
        "",
        "Agreement of eval's LipLeak with the synthetic world's, clip by clip (outputs where both are defined):",
        "",
        "| method | mode | against | clips | mean abs. difference | largest | same side of 0.5 |",
        "|---|---|---|---|---|---|---|",
    ]
    every = {"lipleak_reader": [], "lipleak_exact_landmarks": []}
    for k in METHODS:
        for mode in modes:
            for against in every:
                pairs = [(c["eval"]["lipleak"], c["synthetic"][against]) for c in data[k]["clips"] if c["mode"] == mode
                         and "lipleak" in c["eval"] and math.isfinite(c["synthetic"].get(against, math.nan))]
                if not pairs:
                    continue
                every[against] += pairs
                diff = np.abs(np.subtract(*np.array(pairs).T))
                same = sum((a > 0.5) == (b > 0.5) for a, b in pairs)
                label = "reader" if against == "lipleak_reader" else "exact landmarks"
                lines.append(f"| {k} | {mode} | {label} | {len(pairs)} | {diff.mean():.3f} | {diff.max():.3f} | {same} of {len(pairs)} |")
    for against, pairs in every.items():
        if len(pairs) > 2:
            a, b = np.array(pairs).T
            r = np.corrcoef(a, b)[0, 1] if a.std() > 0 and b.std() > 0 else math.nan
            label = "the reader" if against == "lipleak_reader" else "the exact landmarks"
            lines.append("")
            lines.append(f"Over all {len(pairs)} outputs, eval against {label}: mean absolute difference "
                         f"{np.abs(a - b).mean():.3f}, Pearson correlation {r:.3f}.")
    return lines


def _plain(value):
    """``value`` with NaN as null, for JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_section(path: Path, lines: list[str]) -> None:
    """Append ``lines`` to ``path``, replacing an earlier section with the same title (and only it)."""
    text = path.read_text() if path.exists() else ""
    if SECTION in text:
        start = text.index(SECTION)
        following = text.find("\n## ", start + len(SECTION))
        text = text[:start] + (text[following + 1 :] if following >= 0 else "")
    path.write_text(text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n")


def screenshot(page: Path, picture: Path, width: int = 1250, height: int = 3000) -> None:
    """The page as a person sees it in a browser: headless chromium, one full-width picture."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        raise SystemExit("no chromium found for --screenshot")
    from PIL import Image

    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={width},{height}",
                    f"--screenshot={picture.absolute()}", page.absolute().as_uri()], check=True, capture_output=True)
    with Image.open(picture) as image:
        pixels = np.asarray(image.convert("RGB"))
    used = np.flatnonzero((pixels < 250).any(axis=(1, 2)))  # rows with anything on them
    Image.fromarray(pixels[: min(len(pixels), used[-1] + 24)]).save(picture, optimize=True)


def main(argv=None, extra=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=5)
    parser.add_argument("--modes", default="cross,silent")
    parser.add_argument("--screenshot", type=Path, help="write a picture of the report page here")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the results go (default: benchmarks/results)")
    parser.add_argument("--work", type=Path, help="where the clips and dubs go (default: a temporary folder)")
    args = parser.parse_args(argv)
    modes = tuple(args.modes.split(","))
    start, load = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        data = run(args.clips, modes, work, extra)
    wall = time.perf_counter() - start
    results = data.pop("_report")
    (args.results / "eval_bench.json").write_text(json.dumps(_plain(data), indent=1) + "\n")
    write_section(args.results / "eval.md", section(data, args.clips, modes, wall, load))
    skipped = dict.fromkeys(SYNCNET_METRICS, WHY_NO_SYNCNET)
    context = {"outputs": f"the shipped small model's dubs of {len(results)} held-out synthetic clips, cross mode "
                          "(another clip's speech), scored in memory by benchmarks/eval_bench.py",
               "sources": "the clips before dubbing", "audio": "the driving speech", "SyncNet weights": "none"}
    page = write_report(args.results / "eval-report", results, summarise(results), overwrite=True, skipped=skipped, context=context)
    print(f"report: {page}")
    if args.screenshot:
        screenshot(page, args.screenshot)
        print(f"picture: {args.screenshot}")
    print(f"{wall:.0f} s; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
