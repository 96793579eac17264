"""Time `keysync bench` (copy --quick; copy and oracle in full) and record the oracle/copy table.

    python benchmarks/synthetic_bench.py

Writes benchmarks/results/bench_{copy,oracle}.json ({mode: {metric: value}}), the CSV/PNG results under
benchmarks/results/bench-{copy,oracle}/, and benchmarks/results/synthetic_bench.md with wall times.
The clips are rendered once (by the copy run) and reused by the oracle run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
KEYS = ("lipleak", "sync_corr", "sync_mae", "cross_leak", "psnr_outside", "ssim_upper", "mouth_jitter", "edge_jitter",
        "occluder_mae", "lipleak_lm", "sync_corr_lm", "cross_leak_lm")


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "keysync.cli", *argv], check=True)
    return time.perf_counter() - start


def main() -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        quick = timed(["bench", "--method", "copy", "--quick", "--out", f"{tmp}/quick"])
    full_copy = timed(["bench", "--method", "copy", "--out", str(RESULTS / "bench-copy"), "--json",
                       str(RESULTS / "bench_copy.json"), "--overwrite"])
    full_oracle = timed(["bench", "--method", "oracle", "--data", str(RESULTS / "bench-copy" / "data"), "--out",
                         str(RESULTS / "bench-oracle"), "--json", str(RESULTS / "bench_oracle.json"), "--overwrite"])
    lines = [
        "# keysync bench on the synthetic world",
        "",
        f"Machine: {os.cpu_count()} CPU cores, load average {load:.1f} at the start (shared machine).",
        "",
        "| command | wall time |",
        "|---|---|",
        f"| `keysync bench --method copy --quick` (3 clips, rendered from scratch) | {quick:.0f} s |",
        f"| `keysync bench --method copy` (20 clips, rendered from scratch) | {full_copy:.0f} s |",
        f"| `keysync bench --method oracle` (same 20 clips) | {full_oracle:.0f} s |",
        "",
        "Means over the 20 held-out clips (test split, seed 0, 256x256):",
        "",
        "| method | mode | " + " | ".join(KEYS) + " |",
        "|---|---|" + "---|" * len(KEYS),
    ]
    for method in ("copy", "oracle"):
        summary = json.loads((RESULTS / f"bench_{method}.json").read_text())
        for mode, values in summary.items():
            cells = [f"{values[k]:.3g}" if k in values else "-" for k in KEYS]
            lines.append(f"| {method} | {mode} | " + " | ".join(cells) + " |")
    (RESULTS / "synthetic_bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
