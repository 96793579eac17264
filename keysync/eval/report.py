"""``keysync eval``'s outputs: the table it prints, and the JSON and CSV files it writes (atomically)."""

from __future__ import annotations

import csv
import json
import math

from ..files import write_atomic
from .score import METRICS, ClipResult

COLUMNS = {"lse_d": "LSE-D", "lse_c": "LSE-C", "av_offset": "offset", "psnr_box": "PSNR box", "ssim_box": "SSIM box",
           "psnr_frame": "PSNR frame", "ssim_frame": "SSIM frame", "lipleak": "LipLeak", "mouth_jitter": "jitter"}


def _cell(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.4g}"


def print_table(results: list[ClipResult], total: dict) -> None:
    """One row per clip, then the mean and its 95 % interval over the clips."""
    shown = [m for m in METRICS if total[m]["clips"] or any(r.error for r in results)]
    rows = [["clip", *(COLUMNS[m] for m in shown)]]
    for r in results:
        rows.append([r.name, *(("failed" if r.error else _cell(r.values[m])) for m in shown)])
    rows.append(["mean", *(_cell(total[m]["mean"]) for m in shown)])
    rows.append(["95% interval", *(f"{_cell(total[m]['low'])}..{_cell(total[m]['high'])}" for m in shown)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip())


def _plain(value: float):
    return value if math.isfinite(value) else None


def write_json(path, results: list[ClipResult], total: dict) -> None:
    clips = []
    for r in results:
        clip = {"name": r.name, "error": r.error, **{m: _plain(r.values[m]) for m in METRICS}}
        if r.sync is not None:
            clip["offset_curve"] = [float(v) for v in r.sync.mean_dists]  # shifts -15..15 frames
            clip["framewise_confidence"] = [float(v) for v in r.sync.framewise_confidence]
        clips.append(clip)
    data = {"metrics": METRICS, "clips": clips,
            "total": {m: {k: _plain(v) if k != "clips" else v for k, v in row.items()} for m, row in total.items()}}
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1) + "\n"))


def write_csv(path, results: list[ClipResult], total: dict) -> None:
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["clip", *METRICS, "error"])
            for r in results:
                out.writerow([r.name, *("" if not math.isfinite(r.values[m]) else r.values[m] for m in METRICS), r.error or ""])
            for key, label in (("mean", "mean"), ("low", "ci95_low"), ("high", "ci95_high")):
                out.writerow([label, *("" if not math.isfinite(total[m][key]) else total[m][key] for m in METRICS), ""])

    write_atomic(path, write)
