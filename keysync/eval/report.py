"""``keysync eval``'s outputs: the table it prints, the JSON and CSV files it writes (atomically), and the
report folder a person reads (``write_report``: a page with the totals, per-clip charts, SyncNet's
offset curves of the worst clips and the faces of their least confident windows)."""

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
    rows = [["clip", *(COLUMNS.get(m, m) for m in shown)]]
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


# --- the report folder (--report DIR) ---------------------------------------------------------------

REPORT_PAGE = "index.html"
REPORT_MARK = "keysync eval report"  # the page's generator tag: --overwrite replaces only a folder whose page has it
WORST_CLIPS = 3  # clips whose SyncNet curve and least confident faces are shown

# why a metric no clip has was not computed (``write_report(skipped=...)`` overrides these)
SKIP_REASONS = {
    **dict.fromkeys(("lse_d", "lse_c", "av_offset"), "no SyncNet weights were given (--syncnet)"),
    **dict.fromkeys(("psnr_box", "ssim_box", "psnr_frame", "ssim_frame"), "no source video to compare with (--sources)"),
    "lipleak": "no clip's driving audio has a silent frame (RMS under -45 dBFS), so there was nothing to leak into",
    "mouth_jitter": "no clip has 3 frames in a row with a face",
}
# which way is better, where it is known
BETTER = {"lse_d": "lower", "lse_c": "higher", "psnr_box": "higher", "ssim_box": "higher", "psnr_frame": "higher",
          "ssim_frame": "higher", "lipleak": "lower", "mouth_jitter": "lower"}


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:1.5em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#f2f2f2}"
    ".grid{display:flex;flex-wrap:wrap;gap:.5em}.grid img{max-width:100%}p.note,li.note{color:#555}img{border:0}"
)


def _is_report(folder) -> bool:
    from pathlib import Path

    page = Path(folder) / REPORT_PAGE
    return page.is_file() and REPORT_MARK in page.read_text(errors="replace")[:2000]


def check_report_folder(folder, inputs=(), overwrite: bool = False):
    """Before any work: the report goes into a new or empty folder; over an earlier report only with
    ``overwrite``; never over a folder holding anything else (``--overwrite`` replaces a whole folder, so it
    must not empty one of the user's)."""
    from pathlib import Path

    from ..errors import KeySyncError
    from ..media.writer import check_output_path

    folder = Path(folder)
    empty = folder.is_dir() and not any(folder.iterdir())
    if folder.is_dir() and not empty and not _is_report(folder):
        raise KeySyncError(f"{folder} is a folder of other files, not a keysync eval report; give a new or empty folder to --report")
    return check_output_path(folder, [i for i in inputs if i is not None], overwrite=overwrite or empty, folder=True)


def write_report(folder, results: list[ClipResult], total: dict | None = None, *, overwrite: bool = False,
                 skipped: dict[str, str] | None = None, context: dict[str, str] | None = None):
    """Write the report folder ``folder``: ``index.html`` and its PNGs (matplotlib, Agg), made in a hidden
    folder beside it and moved into place when complete. The page has the totals table (mean and 95 %
    interval of every metric a clip has, whatever its name), a bar chart per metric over the clips, SyncNet's
    offset-distance curve of the ``WORST_CLIPS`` clips of lowest LSE-C and the face crops of their least
    confident windows; a metric no clip has is one line saying why (``skipped``: {metric: why}, over
    ``SKIP_REASONS``). ``context``: {label: text} listed at the top (inputs, weights). An existing non-empty
    folder is refused unless ``overwrite`` and it is an earlier report. Returns the page's path."""
    import shutil

    from ..files import replace_folder, temp_folder
    from .score import summarise

    folder = check_report_folder(folder, overwrite=overwrite)
    total = summarise(results) if total is None else total
    folder.absolute().parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_folder(folder)
    try:
        page = _report_page(tmp, results, total, {**SKIP_REASONS, **(skipped or {})}, context or {})
        (tmp / REPORT_PAGE).write_text(page, encoding="utf-8")
        replace_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder / REPORT_PAGE


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def _label(metric: str) -> str:
    return COLUMNS.get(metric, metric)


def _report_page(folder, results: list[ClipResult], total: dict, reasons: dict[str, str], context: dict[str, str]) -> str:
    from html import escape

    from .score import METRICS

    scored = [r for r in results if r.error is None]
    failed = [r for r in results if r.error is not None]
    metrics = list(total)
    with_clips = [m for m in metrics if any(_finite(r.values.get(m)) for r in scored)]
    set_level = [m for m in metrics if m not in with_clips and _finite(total[m]["mean"])]
    missing = [m for m in metrics if m not in with_clips and m not in set_level]

    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta name="generator" content="{REPORT_MARK}">',
        f"<title>keysync eval: {len(results)} clips</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>keysync eval</h1>",
        f"<p>{len(scored)} of {len(results)} clips scored"
        + (f"; {len(failed)} could not be scored (listed below)" if failed else "") + ".</p>",
    ]
    if context:
        out.append("<table class=\"context\">" + "".join(
            f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>" for k, v in context.items()) + "</table>")

    out += ["<h2>Totals</h2>", ('<table class="totals"><thead><tr><th>metric</th><th>mean</th><th>95 % interval</th>'
            "<th>clips</th><th>what it is</th></tr></thead><tbody>")]
    for m in with_clips + set_level:
        row = {"low": math.nan, "high": math.nan, **total[m]}
        interval = f"{_cell(row['low'])} .. {_cell(row['high'])}" if _finite(row["low"]) else "-"
        clips = row.get("clips", "") if m in with_clips else "whole set"
        out.append(f'<tr data-metric="{escape(m)}"><td>{escape(_label(m))}</td><td class="num">{_cell(row["mean"])}</td>'
                   f'<td class="num">{interval}</td><td class="num">{clips}</td><td>{escape(METRICS.get(m, ""))}</td></tr>')
    out.append("</tbody></table>")
    out.append('<p class="note">The mean over the clips that have the metric; the 95 % interval is that of the mean, '
               "from Student's t over clips (none with fewer than 2 clips).</p>")
    if missing:
        by_reason: dict[str, list[str]] = {}
        for m in missing:
            by_reason.setdefault(reasons.get(m, "no clip has a value (see the command's warnings for what was missing)"), []).append(m)
        out.append('<ul class="missing">')
        for why, names in by_reason.items():
            out.append(f'<li class="note" data-metrics="{escape(" ".join(names))}">{escape(", ".join(map(_label, names)))}: '
                       f"not computed, {escape(why)}.</li>")
        out.append("</ul>")
    if failed:
        out.append("<h3>Clips that could not be scored</h3><ul>")
        out += [f"<li><b>{escape(r.name)}</b>: {escape(r.error)}</li>" for r in failed]
        out.append("</ul>")

    out.append("<h2>Per clip</h2>")
    if with_clips:
        out.append('<p class="note">Bars: each clip\'s value (with its own 95 % interval where the metric gives one); '
                   "line and band: the mean over the clips and its 95 % interval.</p><div class=\"grid\">")
        for m in with_clips:
            name = f"clips_{_file_name(m)}.png"
            _save(_clip_chart(scored, m, {"low": math.nan, "high": math.nan, **total[m]}), folder / name)
            out.append(f'<img src="{name}" alt="{escape(_label(m))} per clip">')
        out.append("</div>")
    else:
        out.append('<p class="note">No metric has per-clip values.</p>')
    if set_level:
        out.append('<p class="note">' + ", ".join(escape(_label(m)) for m in set_level)
                   + ": one value for the whole set of clips, no per-clip bars.</p>")

    synced = sorted((r for r in scored if r.sync is not None), key=lambda r: r.sync.confidence)
    worst = synced[:WORST_CLIPS]
    out.append("<h2>SyncNet: the clips of lowest LSE-C</h2>")
    if not worst:
        why = reasons.get("lse_c", "no clip has SyncNet scores")
        out.append(f'<p class="note">Not shown: no clip has SyncNet scores; {escape(why)}.</p>')
    else:
        _save(_offset_curves(worst), folder / "offset_curves.png")
        out += [('<p class="note">SyncNet\'s mean audio-video distance at each offset (the curve LSE-D and LSE-C are read from): '
                "LSE-D is its minimum, LSE-C the median minus that minimum, the offset where the minimum is. "
                "A clip in sync has one deep, narrow dip at offset 0.</p>"),
                '<img src="offset_curves.png" alt="offset-distance curves of the worst clips">']
        for i, r in enumerate(worst, 1):
            if not len(r.sync.framewise_confidence):
                continue
            name = f"low_sync_{i}.png"
            _save(_low_sync_figure(r), folder / name)
            out += [f"<h3>{escape(r.name)}: its least confident windows</h3>",
                    ('<p class="note">Top: SyncNet\'s confidence per 5-frame window at the chosen offset (median filtered '
                    "over 9 windows, as the reference does). Below: the face crop SyncNet saw at the middle frame of "
                    "each marked window, least confident first.</p>"),
                    f'<img src="{name}" alt="least confident windows of {escape(r.name)}">']
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _file_name(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _save(fig, path) -> None:
    with open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100, metadata={"Software": None})


def _figure(width: float, height: float):
    """A matplotlib figure drawn by Agg, without pyplot (no global state, no backend switching)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _clip_chart(scored: list[ClipResult], metric: str, row: dict):
    import numpy as np

    clips = [r for r in scored if _finite(r.values.get(metric))]
    values = np.array([r.values[metric] for r in clips])
    fig = _figure(min(12.0, max(3.6, 1.6 + 0.32 * len(clips))), 2.8)
    ax = fig.add_subplot()
    x = np.arange(len(clips))
    intervals = [getattr(r, "intervals", {}).get(metric) for r in clips]  # per-clip intervals, where a metric has them
    yerr = None
    if all(iv is not None for iv in intervals) and intervals:
        low, high = np.array(intervals, np.float64).T
        yerr = np.stack([values - low, high - values])
    ax.bar(x, values, color="#6b8fb3", yerr=yerr, capsize=3 if yerr is not None else 0, zorder=2)
    ax.axhline(row["mean"], color="#c0392b", lw=1.2, zorder=3, label=f"mean {_cell(row['mean'])}")
    if _finite(row["low"]):
        ax.axhspan(row["low"], row["high"], color="#c0392b", alpha=0.15, lw=0, zorder=1, label="95 % interval of the mean")
    better = BETTER.get(metric)
    ax.set_title(_label(metric) + (f" ({better} is better)" if better else ""), fontsize=10)
    if len(clips) <= 40:
        ax.set_xticks(x, [r.name if len(r.name) <= 14 else r.name[:13] + "…" for r in clips], rotation=45, ha="right", fontsize=7)
    else:
        ax.set_xlabel("clip")
    ax.tick_params(axis="y", labelsize=8)
    ax.legend(fontsize=7, loc="best")
    return fig


def _offset_curves(worst: list[ClipResult]):
    import numpy as np

    fig = _figure(3.6 * len(worst) + 0.4, 3.0)
    axes = fig.subplots(1, len(worst), squeeze=False)[0]
    for ax, r in zip(axes, worst):
        curve = np.asarray(r.sync.mean_dists)
        vshift = (len(curve) - 1) // 2
        offsets = vshift - np.arange(len(curve))  # column j compares the audio shifted by j - vshift
        ax.plot(offsets, curve, color="#2c3e50", lw=1.3, marker=".", ms=3)
        ax.plot([r.sync.offset], [r.sync.min_dist], "o", color="#c0392b", label=f"LSE-D {r.sync.min_dist:.3g} at offset {r.sync.offset}")
        median = r.sync.min_dist + r.sync.confidence
        ax.axhline(median, color="#7f8c8d", ls="--", lw=1, label=f"median; LSE-C {r.sync.confidence:.3g}")
        ax.annotate("", (r.sync.offset, r.sync.min_dist), (r.sync.offset, median), arrowprops={"arrowstyle": "<->", "color": "#c0392b"})
        ax.set_title(r.name, fontsize=10)
        ax.set_xlabel("offset (frames; positive: audio leads)", fontsize=8)
        ax.set_ylabel("mean distance", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper right")
    return fig


def _low_sync_figure(r: ClipResult):
    import numpy as np

    from .syncnet import WINDOW

    crops = r.low_sync
    columns = max(1, len(crops))
    fig = _figure(max(6.0, 1.9 * columns), 2.2 + (2.0 if crops else 0.0))
    grid = fig.add_gridspec(2 if crops else 1, columns, height_ratios=[1, 1.25] if crops else [1])
    ax = fig.add_subplot(grid[0, :])
    confidence = np.asarray(r.sync.framewise_confidence)
    ax.plot(np.arange(len(confidence)), confidence, color="#2c3e50", lw=1.2)
    ax.set_xlabel("window (its first frame, 25 fps)", fontsize=8)
    ax.set_ylabel("confidence", fontsize=8)
    ax.tick_params(labelsize=7)
    for i, (k, value, crop) in enumerate(crops, 1):
        ax.plot([k], [value], "o", color="#c0392b", ms=4)
        ax.annotate(str(i), (k, value), textcoords="offset points", xytext=(3, 3), fontsize=7, color="#c0392b")
        face = fig.add_subplot(grid[1, i - 1])
        face.imshow(crop)
        face.set_axis_off()
        middle = k + WINDOW // 2
        face.set_title(f"{i}: frames {k}-{k + WINDOW - 1} ({middle / 25:.2f} s)\nconfidence {value:.3g}", fontsize=7)
    return fig
