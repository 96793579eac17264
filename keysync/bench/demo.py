"""``keysync demo``: the method working in two minutes on a laptop, with nothing to download.

Renders a held-out synthetic speaker (an identity and a sentence no model saw in training) and another
held-out clip's speech, dubs the first with the second using the model shipped in the package, and
writes the dubbed video and a side-by-side video (source | dubbed | target: the source re-rendered with
the mouth the new speech asks for). Then scores that one clip as ``keysync bench`` does in its
cross-audio mode.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

DEMO_SIZE = 256
CAPTION = 22  # pixels of the caption strip above each column
LABELS = ("source", "dubbed (KeySync small)", "target")


def side_by_side(columns: list[np.ndarray], labels=LABELS) -> np.ndarray:
    """(T, H, W*len, 3) frames with a caption strip on top of each column."""
    import cv2

    out = []
    for frames, label in zip(columns, labels):
        t, h, w = frames.shape[:3]
        caption = np.full((CAPTION, w, 3), 24, np.uint8)
        cv2.putText(caption, label, (6, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (235, 235, 235), 1, cv2.LINE_AA)
        out.append(np.concatenate([np.broadcast_to(caption, (t, CAPTION, w, 3)), frames], axis=1))
    return np.concatenate(out, axis=2)


def run_demo(out_dir: Path, model: str | None, seed: int, speed: str, steps: int | None, overwrite: bool, progress: bool = True) -> dict:
    """Make, dub, write and score the demo clip; returns {"dubbed", "side_by_side", "metrics"}."""
    from ..media.writer import VideoWriter, check_output_path
    from ..models.model import shipped_model_dir
    from ..pipeline.dub import DubOptions, KeySyncPipeline
    from ..synth.clipio import read_mp4_frames, write_wav
    from ..synth.dataset import load_split, plan_dataset, render_clip, write_dataset
    from ..synth.visemes import mouth_track
    from .methods import MethodOutput
    from .mouth_reader import LoadedReader
    from .runner import driving_for, score

    dubbed_path = check_output_path(out_dir / "keysync-demo.mp4", overwrite=overwrite)
    pair_path = check_output_path(out_dir / "keysync-demo-side-by-side.mp4", overwrite=overwrite)
    pipeline = KeySyncPipeline.from_pretrained(model or shipped_model_dir())
    with tempfile.TemporaryDirectory(prefix="keysync-demo-") as tmp:
        tmp = Path(tmp)
        specs = plan_dataset(2, seed, DEMO_SIZE, DEMO_SIZE, sound_mix=(1.0, 0.0, 0.0, 0.0), only_split="test")
        write_dataset(tmp / "clips", specs, seed, progress=progress)
        records = load_split(tmp / "clips", "test")
        source, truth, spec = records[0], records[0].truth(), records[0].spec()
        frames = len(truth["mouth"])
        drive = driving_for("cross", 0, records, frames, seed)
        speech = tmp / "new_speech.wav"
        write_wav(speech, drive.audio)
        options = DubOptions(speed=speed, steps=steps, seed=seed, progress=progress)
        pipeline.dub_file(source.video, speech, dubbed_path, options, overwrite=overwrite)

        source_frames = read_mp4_frames(source.video)
        dubbed = read_mp4_frames(dubbed_path)[:frames]
        target_mouth = mouth_track(drive.phonemes, frames, spec.fps, spec.identity.articulation)
        target_frames = render_clip(spec, target_mouth)[0]
        with VideoWriter(pair_path, 3 * DEMO_SIZE, DEMO_SIZE + CAPTION, rate=spec.fps, audio=drive.audio, overwrite=overwrite) as writer:
            for image in side_by_side([source_frames, dubbed, target_frames]):
                writer.write(image)
        metrics, _ = score(MethodOutput(dubbed), source_frames, truth, target_mouth, drive.audio, "cross", LoadedReader())
    return {"dubbed": dubbed_path, "side_by_side": pair_path, "metrics": metrics}
