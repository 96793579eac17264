"""How long ``keysync --help`` and ``keysync dub --help`` take: the median of 5 runs, each a new process.

Help must answer at once, so registering the subcommands imports no heavy module (torch, diffusers, av;
``tests/test_cli_errors.py`` checks it). ``python -c pass`` is the interpreter's own start-up, the floor.
Writes benchmarks/results/cli_startup.md. Usage:

    python benchmarks/cli_startup.py [--baseline DIR]

``--baseline DIR``: also time an older source tree, run as ``python -m keysync.cli`` from DIR, e.g. made with
``mkdir DIR && git archive REV keysync | tar -x -C DIR``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
RUNS = 5


def keysync_command() -> list[str]:
    """The installed console script beside this interpreter (not a pyenv shim), else ``python -m``."""
    script = Path(sys.executable).parent / "keysync"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "keysync.cli"]


def median_seconds(command: list[str], cwd: str | None = None) -> tuple[float, list[float]]:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=cwd)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", metavar="DIR", help="also time the keysync source tree in DIR")
    baseline = parser.parse_args().baseline
    keysync = keysync_command()
    shown = " ".join([Path(keysync[0]).name, *keysync[1:]])
    rows = [("`python -c pass` (floor)", [sys.executable, "-c", "pass"], None),
            ("`keysync --help`", keysync + ["--help"], None),
            ("`keysync dub --help`", keysync + ["dub", "--help"], None)]
    if baseline:
        old = [sys.executable, "-m", "keysync.cli"]
        rows += [(f"baseline {baseline}: `--help`", old + ["--help"], baseline),
                 (f"baseline {baseline}: `dub --help`", old + ["dub", "--help"], baseline)]
    lines = [
        "# CLI start-up",
        "",
        f"`python benchmarks/cli_startup.py`: median of {RUNS} runs, each a new process; {os.cpu_count()} CPU cores, "
        f"Python {platform.python_version()}; keysync run as `{shown}`.",
        "",
        "| command | median (s) | runs (s) |",
        "|---|---|---|",
    ]
    for label, command, cwd in rows:
        median, times = median_seconds(command, cwd)
        lines.append(f"| {label} | {median:.3f} | {', '.join(f'{t:.3f}' for t in times)} |")
        print(lines[-1])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines += ["", f"Load average over the last minute when the run ended: {load:.1f} (the machine is shared)."]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cli_startup.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'cli_startup.md'}")


if __name__ == "__main__":
    main()
