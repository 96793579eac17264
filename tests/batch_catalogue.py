"""A tiny catalogue for the `keysync batch` tests: three 8-frame clips, one speech file, a file that is not
a video, the random-weight micro model saved as a model folder, and the outputs of single `keysync dub`
runs of each job, each a new process on one thread, as each of 2 workers has on 2 cores, to compare with (made
once per session). Every job is encoded losslessly (``same_dub``)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from .faces_media_clips import astronaut, moving_frames, tone, write_clip, write_wav
from .micro import micro_model

ROWS = [("v0.mp4", 1, None), ("v1.mp4", 2, None), ("v2.mp4", 3, "two.mp4")]  # video, seed, output name
_made: dict[str, Path] = {}


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def same_dub(path, reference) -> bool:
    """The two videos hold the same frames at the same times, and the same sound: what keysync makes, not
    the encoder's bytes (x264's SIMD macroblock-tree code varied them from run to run until the writer ran
    it cpu-independent), so the jobs are encoded losslessly (crf 0) and compared decoded."""
    import av
    import numpy as np

    def content(file):
        with av.open(str(file)) as media:
            video = [(f.pts, f.to_ndarray(format="rgb24")) for f in media.decode(video=0)]
        with av.open(str(file)) as media:
            sound = np.concatenate([f.to_ndarray() for f in media.decode(audio=0)], axis=1)
        return video, sound

    (frames, sound), (want, want_sound) = content(path), content(reference)
    return (len(frames) == len(want) and all(t == u and np.array_equal(a, b) for (t, a), (u, b) in zip(frames, want))
            and np.array_equal(sound, want_sound))


def catalogue(tmp_path_factory) -> Path:
    """The folder with the clips, ``micro`` (model), ``speech.mp4``, ``broken.mp4`` and ``reference/``: each
    valid job dubbed by `keysync dub` (steps 1, the row's seed)."""
    if "root" not in _made:
        root = tmp_path_factory.mktemp("catalogue")
        micro_model(audio_window=1).save_pretrained(root / "micro")
        for i, (video, _, _) in enumerate(ROWS):
            write_clip(root / video, moving_frames(astronaut(), 160, 120, 8, photo_height=110, amplitude=10 + 5 * i), rate=25)
        write_wav(root / "speech.mp4", tone(0.3))
        (root / "broken.mp4").write_bytes(b"not a video" * 10)
        (root / "reference").mkdir()
        # each its own new process on one thread, as a worker is on 2 cores with 2 workers: float sums depend on
        # the thread count, and on an AVX-512 CPU on where buffers land in memory, which a long test process
        # moves (the same dub made here after building a large model was not byte-identical)
        runs = [subprocess.Popen([sys.executable, "-c", "import sys; from keysync.cli import main; sys.exit(main())", "dub",
                                  str(root / video), str(root / "speech.mp4"), "-o", str(root / "reference" / (output or video)),
                                  "--model", str(root / "micro"), "--steps", "1", "--seed", str(seed), "--crf", "0", "--quiet"],
                                 env=dict(os.environ, OMP_NUM_THREADS="1"), stderr=subprocess.PIPE, text=True)
                for video, seed, output in ROWS]
        for run in runs:
            assert run.wait() == 0, run.stderr.read()
        _made["root"] = root
    return _made["root"]


def write_manifest(path: Path, root: Path, rows=ROWS, broken: bool = True) -> Path:
    """A CSV manifest of ``rows`` (paths relative to the manifest's folder ``root``), and the broken video last."""
    lines = ["video,audio,steps,seed,crf,output"]
    lines += [f"{video},speech.mp4,1,{seed},0,{output or ''}" for video, seed, output in rows]
    lines += ["broken.mp4,speech.mp4,1,1,0,"] if broken else []
    path.write_text("\n".join(lines) + "\n")
    assert path.parent == root
    return path


def outputs(rows=ROWS) -> list[str]:
    return sorted(output or video for video, _, output in rows)
