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


def render_source(folder: str, seed: int) -> dict:
    """The held-out speaker's clip written to ``folder`` (video, speech, ground truth), its faces tracked
    as ``keysync dub`` tracks them, the new speech (the next held-out clip's, whose video is not needed)
    and the demo's third column (``render_target``). Runs in a process of its own while the main one
    imports torch and loads the model (about as long), so that neither adds to the dub's time; it imports
    no torch itself, and keeps off one core (``leave_a_core``): on two cores the main process's imports then
    run unhindered (the demo took a median of 12.1 s against 12.3 s in five alternating runs, 0.4 s less on
    average)."""
    from ..parallel import leave_a_core

    leave_a_core()
    from ..faces.backends import load_backend
    from ..faces.tracking import track_faces
    from ..media.source import VideoSource
    from ..synth.clipio import read_wav, write_wav
    from ..synth.dataset import ClipRecord, clip_audio, make_clip, plan_dataset, write_clip
    from .runner import speech_driving

    specs = plan_dataset(2, seed, DEMO_SIZE, DEMO_SIZE, sound_mix=(1.0, 0.0, 0.0, 0.0), only_split="test")
    write_clip(make_clip(specs[0]), Path(folder))
    source = ClipRecord(Path(folder), specs[0].name)
    audio, phonemes, _ = clip_audio(specs[1])
    speech = Path(folder) / "new_speech.wav"
    write_wav(speech, audio)  # 16-bit, as a rendered clip's speech is read back
    drive = speech_driving(read_wav(speech), phonemes, len(source.truth()["mouth"]), seed, 0)
    write_wav(speech, drive.audio)
    tracked = track_faces(VideoSource(source.video).frames(), load_backend())
    return {"video": str(source.video), "speech": str(speech), "record": (str(source.folder), source.name),
            "audio": drive.audio, "phonemes": drive.phonemes, "tracked": tracked,
            "target": render_target(folder, specs[0].name, drive.phonemes)}


def render_target(folder: str, name: str, phonemes) -> np.ndarray:
    """The source re-rendered with the mouth the new speech asks for: the demo's third column."""
    from ..synth.dataset import ClipRecord, render_clip
    from ..synth.visemes import mouth_track

    record = ClipRecord(Path(folder), name)
    spec = record.spec()
    target_mouth = mouth_track(phonemes, len(record.truth()["mouth"]), spec.fps, spec.identity.articulation)
    return render_clip(spec, target_mouth)[0]


def run_demo(out_dir: Path, model: str | None, seed: int, speed: str, steps: int | None, overwrite: bool, progress: bool = True,
             dtype: str = "auto") -> dict:
    """Make, dub, write and score the demo clip; returns {"dubbed", "side_by_side", "metrics"}.

    The clips are rendered and tracked in a second process while this one imports and loads the model, so
    that the demo takes about as long as its dub and its scoring (two cores: rendering and loading are a
    core's work each, and the dub has both cores to itself)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from ..media.writer import check_output_path

    dubbed_path = check_output_path(out_dir / "keysync-demo.mp4", overwrite=overwrite)
    pair_path = check_output_path(out_dir / "keysync-demo-side-by-side.mp4", overwrite=overwrite)
    with tempfile.TemporaryDirectory(prefix="keysync-demo-") as tmp, \
            ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as renderer:
        rendering = renderer.submit(render_source, tmp, seed)

        from ..faces.frontend import place_crops
        from ..media.writer import VideoWriter
        from ..models.model import shipped_model_dir
        from ..models.precision import resolve_dtype
        from ..parallel import exempt_loaded_objects
        from ..pipeline.dub import DubOptions, KeySyncPipeline
        from ..synth.clipio import read_mp4_frames
        from ..synth.dataset import ClipRecord
        from ..synth.visemes import mouth_track
        from .methods import MethodOutput
        from .mouth_reader import LoadedReader
        from .runner import score

        pipeline = KeySyncPipeline.from_pretrained(model or shipped_model_dir(), dtype=resolve_dtype(dtype))
        exempt_loaded_objects()
        made = rendering.result()
        source = ClipRecord(Path(made["record"][0]), made["record"][1])
        truth, spec = source.truth(), source.spec()
        frames = len(truth["mouth"])
        options = DubOptions(speed=speed, steps=steps, seed=seed, progress=progress)
        face = place_crops(made["tracked"], pipeline.model.crop_size, pipeline.model.crop_plan, name=str(source.video))
        pipeline.dub_file(source.video, made["speech"], dubbed_path, options, overwrite=overwrite, face=face)

        source_frames = read_mp4_frames(source.video)
        dubbed = read_mp4_frames(dubbed_path)[:frames]
        target_mouth = mouth_track(made["phonemes"], frames, spec.fps, spec.identity.articulation)
        target_frames = made["target"]
        renderer.shutdown(wait=False)  # the second process's exit (about 1.5 s of its libraries' teardown) overlaps the scoring
        with VideoWriter(pair_path, 3 * DEMO_SIZE, DEMO_SIZE + CAPTION, rate=spec.fps, audio=made["audio"], overwrite=overwrite) as writer:
            for image in side_by_side([source_frames, dubbed, target_frames]):
                writer.write(image)
        metrics, _ = score(MethodOutput(dubbed), source_frames, truth, target_mouth, made["audio"], "cross", LoadedReader())
    return {"dubbed": dubbed_path, "side_by_side": pair_path, "metrics": metrics}
