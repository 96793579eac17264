"""Where a model's held-out lip sync goes: seen or unseen faces, seen or unseen voices.

Each face of one split is dubbed with the speech of the next clip of another (or the same) split, as
`keysync bench` pairs them in cross mode, and the mouth reader's jaw opening is correlated with the one that
speech asks for. Training faces with training voices is what the model was fitted to; test faces with
test voices is the benchmark; the two mixed say how much of the drop comes from the face and how much from
the voice (and sentence). Usage:

    python benchmarks/sync_by_face_and_voice.py --data data/synth --clips 10 \\
        --out benchmarks/results/sync_by_face_and_voice.json
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


def sync_per_clip(method, faces, voices, reader) -> dict[str, float]:
    """{face clip: sync of its dub with the next voice clip's speech}."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, record in enumerate(faces):
            truth = record.truth()
            drive = driving_for("reconstruction", (i + 1) % len(voices), voices, len(truth["mouth"]), 0)  # that clip's own speech
            output, target, _ = dub_clip(method, record, truth, drive, Path(tmp) / f"{record.name}.wav")
            read = reader.read(output.frames, truth["landmarks"])[:, 0]
            out[record.name] = M.pearson(read, target[:, 0], M.readable_frames(truth["landmarks"], truth["occluder"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a `keysync synth` dataset (its train and test splits)")
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args()
    method, reader = KeySyncMethod(args.model), LoadedReader()
    clips = {split: speech_clips(Path(args.data), args.clips, split) for split in ("train", "test")}
    result = {}
    for faces in ("train", "test"):
        for voices in ("train", "test"):
            sync = sync_per_clip(method, clips[faces], clips[voices], reader)
            values = np.array(list(sync.values()))
            key = f"{faces} faces, {voices} voices"
            result[key] = {"mean": round(float(values.mean()), 4), "se": round(float(values.std(ddof=1) / np.sqrt(len(values))), 4),
                           "per_clip": {k: round(v, 4) for k, v in sync.items()}}
            print(key, result[key]["mean"], "+-", result[key]["se"], flush=True)
    Path(args.out).write_text(json.dumps({"data": args.data, "clips": args.clips, "model": args.model or "shipped", "sync": result}, indent=1) + "\n")


if __name__ == "__main__":
    main()
