"""The jobs manifest (CSV or JSONL, one row per job) read into checked ``Job``s.

A row's columns are ``video``, ``audio``, an optional ``output`` (a name under OUT_DIR; default the video's
name with .mp4) and any option of ``keysync dub`` under its long name (``face-index`` or ``face_index``).
Each row is parsed by ``keysync dub``'s own argument parser and checked by its own checks, so a manifest
row means exactly what the same ``keysync dub`` command line means.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from ..errors import KeySyncError

FILE_COLUMNS = ("video", "audio", "occluders")  # paths: relative ones are relative to the manifest's folder
FOLDER_COLUMNS = ("model", "segmenter")  # relative to the manifest's folder when that path exists, else a name
BATCH_ONLY = ("help", "output", "overwrite", "quiet", "device", "dtype", "compile", "fp8")  # dub options set for the whole batch
# dub options -> the DubOptions field each sets, as `keysync dub` passes them (tests/test_batch_local.py holds
# this table to dub's parser, so that an option dub gains cannot be silently ignored by batch)
DUB_OPTIONS = {"speed": "speed", "steps": "steps", "guidance": "guidance", "seed": "seed", "batch_size": "clips_per_call",
               "mask": "mask", "face_index": "face_index", "ref_frame": "ref_frame", "occluders": "occluders",
               "long_audio": "long_audio", "short_audio": "short_audio", "color_match": "color_match", "paste": "paste",
               "crf": "crf", "encoder": "encoder", "deep_cache": "deep_cache"}
# options added after journals were written, with their defaults: a job's key holds them only where they
# differ, so that a journal of an older version does not dub its finished jobs again
LATER_OPTIONS = {"deep_cache": 1}
OTHER_OPTIONS = ("model", "random_weights", "occluder_point", "occluder_negative", "occluder_frame", "segmenter")  # in Job
TRUE, FALSE = ("1", "true", "yes", "y"), ("0", "false", "no", "n", "")


@dataclass(frozen=True)
class Job:
    """One dub, ready for a worker: plain values only, so that it pickles to another process or node."""

    row: int  # the manifest's row number (1 = the first job)
    name: str  # the output's path under OUT_DIR, which names the job in the journal
    video: str
    audio: str
    output: str  # the final output path
    model: str | None  # None: the small model shipped with keysync
    random_weights: bool
    dtype: str
    options: dict  # DubOptions fields
    clicks: tuple | None  # (frame, positive points, negative points) to track an occluder with SAM 2
    segmenter: str | None
    key: str  # hash of everything the output depends on: a journaled output counts only for the same key
    compile: bool = False  # the worker compiles its networks (the output changes by float rounding only: not in the key)
    fp8: str | None = None  # the worker's networks multiply in FP8 (KeySyncPipeline.fp8): in the key, where set


@dataclass(frozen=True)
class InvalidRow:
    row: int
    name: str
    error: str


class RowParser(argparse.ArgumentParser):
    """For ``keysync dub``'s parser: its errors raised instead of printed and exited on."""

    def error(self, message: str):
        raise KeySyncError(message)


@dataclass(frozen=True)
class DubRules:
    """``keysync dub``'s command line as the batch needs it, lent by the shell (keysync/batch/commands.py),
    which sits above this layer: its parser (made with ``RowParser``), its checks of the parsed arguments
    (which return the occluder clicks or None), and its check of a device name."""

    parser: argparse.ArgumentParser
    check: Callable[[argparse.Namespace], object]
    check_device: Callable[[str], None]


def manifest_columns(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Column name -> the dub option it sets."""
    return {a.dest: a for a in parser._actions if a.option_strings and a.dest not in BATCH_ONLY}


def read_rows(path: str | Path) -> list[dict]:
    """The manifest's rows as dicts with '-' in column names read as '_' and blank cells dropped."""
    path = Path(path)
    if not path.is_file():
        raise KeySyncError(f"manifest {path} does not exist; give a .csv or .jsonl file with one row per job")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise KeySyncError(f"cannot read manifest {path} ({err}); give a UTF-8 .csv or .jsonl file") from None
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if rows and None in rows[0]:
            raise KeySyncError(f"{path}: row 1 has more cells than the header has columns; quote cells that contain commas")
    elif path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise KeySyncError(f"{path} line {number} is not JSON ({err.msg}); write one JSON object per line") from None
            if not isinstance(row, dict):
                raise KeySyncError(f"{path} line {number} is not a JSON object; write one object per line, such as {{\"video\": ..., \"audio\": ...}}")
            rows.append(row)
    else:
        raise KeySyncError(f"manifest {path}: give a .csv or a .jsonl file (one row per job)")
    if not rows:
        raise KeySyncError(f"manifest {path} lists no jobs; give one row per video to dub")
    cleaned = []
    for row in rows:
        cleaned.append({str(k).strip().replace("-", "_"): v for k, v in row.items() if v is not None and v != ""})
    return cleaned


def read_manifest(path: str | Path, out_dir: Path, rules: DubRules, model: str | None = None,
                  dtype: str = "float32", compile: bool = False, fp8: str | None = None) -> tuple[list[Job], list[InvalidRow]]:
    """Every row checked as ``keysync dub`` checks its arguments (files exist and are readable media,
    numbers in range), plus outputs that two rows share. Unknown columns are an error for the whole manifest."""
    path = Path(path).resolve()  # absolute paths: a Ray actor's working folder is not this one
    rows = read_rows(path)
    if model is not None and Path(model).exists():
        model = str(Path(model).resolve())
    columns = manifest_columns(rules.parser)
    known = {"video", "audio", "output", *columns}
    unknown = sorted({k for row in rows for k in row} - known)
    if unknown:
        raise KeySyncError(f"{path}: unknown column(s) {', '.join(unknown)}; columns are video, audio, output and "
                           f"keysync dub's options: {', '.join(sorted(columns))}")
    jobs, invalid, owners = [], [], {}
    for number, row in enumerate(rows, 1):
        name = _output_name(row)
        try:
            job = _read_row(number, row, name, path.parent, out_dir, rules, columns, model, dtype, compile, fp8)
            if name in owners:
                raise KeySyncError(f"output {name} is also row {owners[name]}'s; give each row its own output")
            owners[name] = number
            jobs.append(job)
        except KeySyncError as err:
            invalid.append(InvalidRow(number, name, str(err)))
    return jobs, invalid


def _output_name(row: dict) -> str:
    if "output" in row:
        return str(row["output"])
    return PurePosixPath(str(row.get("video", "job"))).with_suffix(".mp4").name


def _read_row(number, row, name, base: Path, out_dir: Path, rules: DubRules, columns, model, dtype, compile, fp8) -> Job:
    for column in ("video", "audio"):
        if column not in row:
            raise KeySyncError(f"no {column}; give the {column} file's path in the {column} column")
    out = PurePosixPath(name)
    if out.is_absolute() or ".." in out.parts or not out.suffix:
        raise KeySyncError(f"output {name!r}: give a file name such as clip.mp4 (or sub/clip.mp4) inside OUT_DIR")
    row = dict(row)
    row.setdefault("model", model)
    for column in FILE_COLUMNS:
        if column in row:
            row[column] = str(base / str(row[column]))
    for column in FOLDER_COLUMNS:
        if row.get(column) is not None and (base / str(row[column])).exists():
            row[column] = str(base / str(row[column]))
    args = rules.parser.parse_args(_argv(row, columns, out_dir / name))
    clicks = rules.check(args)
    if not args.random_weights:
        from ..models.download import resolve_model

        args.model = str(resolve_model(args.model))  # no model: the released weights; small: the shipped demo model
        if not (Path(args.model) / "keysync.json").is_file():
            raise KeySyncError(f"--model {args.model} is not a KeySync model folder (no keysync.json); make one with keysync convert")
    options = {field: getattr(args, dest) for dest, field in DUB_OPTIONS.items()} | {"progress": False}
    clicks = None if clicks is None else (clicks.frame, [tuple(p) for p in clicks.positive], [tuple(p) for p in clicks.negative])
    keyed = {k: v for k, v in options.items() if k not in LATER_OPTIONS or v != LATER_OPTIONS[k]}
    spec = dict(video=_identity(args.video), audio=_identity(args.audio), occluders=_identity(args.occluders),
                model=args.model, random_weights=args.random_weights, dtype=dtype, options=keyed, clicks=clicks,
                segmenter=args.segmenter) | ({"fp8": fp8} if fp8 else {})  # keys of jobs without FP8 as before it
    key = hashlib.sha256(json.dumps(spec, sort_keys=True, default=list).encode()).hexdigest()
    return Job(number, name, args.video, args.audio, str(out_dir / name), args.model, args.random_weights, dtype,
               options, clicks, args.segmenter, key, compile, fp8)


def _argv(row: dict, columns: dict[str, argparse.Action], output: Path) -> list[str]:
    """The ``keysync dub`` command line a row stands for."""
    argv = [str(row["video"]), str(row["audio"]), "-o", str(output)]
    for column, value in row.items():
        if column in ("video", "audio", "output") or value is None:
            continue
        action = columns[column]
        flag = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):
            text = str(value).strip().lower()
            if text not in TRUE + FALSE:
                raise KeySyncError(f"{column} {value!r}: give true or false")
            argv += [flag] if text in TRUE else []
        elif isinstance(action, argparse._AppendAction):  # repeatable: a JSON list, or ';'-separated in CSV
            items = value if isinstance(value, list) else str(value).split(";")
            for item in items:
                argv += [flag, ",".join(map(str, item)) if isinstance(item, list) else str(item).strip()]
        else:
            argv += [flag, ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return argv


def _identity(path: str | None):
    """A file's path, size and modification time: a replaced input makes the job new."""
    if path is None:
        return None
    stat = Path(path).stat()
    return [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]
