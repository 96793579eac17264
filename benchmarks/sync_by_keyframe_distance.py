"""Where a model loses lip sync: the mouth reader's jaw error by distance from the nearest keyframe.

Keyframes sit every 13 frames (keysync.pipeline.plan); the frames between them come from the
interpolation network. A flat error means the middle frames follow the speech as well as the keyframes do;
an error growing with the distance means they lean on the keyframes instead. Cross mode (another clip's
speech), as `keysync bench` pairs them. Usage:

    python benchmarks/sync_by_keyframe_distance.py --data data/synth --split val --clips 4 \\
        --model shipped --model runs/s5/model --out benchmarks/results/sync_by_keyframe_distance.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from keysync.bench import metrics as M
from keysync.bench.methods import KeySyncMethod
from keysync.bench.mouth_reader import LoadedReader
from keysync.bench.runner import driving_for, dub_clip, speech_clips
from keysync.pipeline.plan import STEP


def jaw_errors_by_distance(model: str | None, records, reader) -> dict[int, list[float]]:
    """{frames from the nearest keyframe: |read jaw - the speech's jaw| per readable frame}."""
    method = KeySyncMethod(model)
    errors: dict[int, list[float]] = {d: [] for d in range(STEP // 2 + 1)}
    with tempfile.TemporaryDirectory() as tmp:
        for i, record in enumerate(records):
            truth = record.truth()
            drive = driving_for("cross", i, records, len(truth["mouth"]), 0)
            output, target, _ = dub_clip(method, record, truth, drive, Path(tmp) / f"{record.name}.wav")
            read = reader.read(output.frames, truth["landmarks"])[:, 0]
            target = target[:, 0]
            valid = M.readable_frames(truth["landmarks"], truth["occluder"])
            for t in np.flatnonzero(valid):
                errors[min(t % STEP, STEP - t % STEP)].append(float(abs(read[t] - target[t])))
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a `keysync synth` dataset")
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--model", action="append", required=True, help="model folder, or 'shipped' (repeatable)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args()
    records = speech_clips(Path(args.data), args.clips, args.split)
    reader = LoadedReader()
    result = {}
    for model in args.model:
        errors = jaw_errors_by_distance(None if model == "shipped" else model, records, reader)
        result[model] = {str(d): {"mean_abs_error": round(float(np.mean(e)), 4), "frames": len(e)} for d, e in errors.items()}
        print(model, {d: v["mean_abs_error"] for d, v in result[model].items()}, flush=True)
    Path(args.out).write_text(json.dumps({"data": args.data, "split": args.split, "clips": args.clips, "models": result}, indent=1))


if __name__ == "__main__":
    main()
