"""Bad input to every ``keysync`` subcommand: one line that names the problem, a non-zero exit, no damage.

The rule each case is held to:

- exit status 1 for a ``KeySyncError`` (a value the parser accepted but the command refuses) and 2 for a
  usage error found by argparse (a wrong type or choice, a missing argument); both print exactly one line
  on stderr, ``keysync COMMAND: error: ...``, with no "Traceback" (argparse's usage block is replaced by
  that one line, which points to ``--help``);
- the line contains the words that name the problem (``expect`` below);
- nothing is written: every file under the case's folder keeps its bytes, no file (``.partial`` or other)
  appears, and the output path does not exist unless it did before.

An unwritable output folder: permission bits do not stop root (these tests run as root), so the folder
is a 0555 one where that refuses, else ``/sys`` (sysfs refuses new files even to root); the test is
skipped where neither does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from keysync.cli import main
from keysync.media.writer import nvenc_opens
from keysync.models.model import SHIPPED_MODEL

from .faces_media_clips import astronaut, moving_frames, tone, write_clip, write_wav


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A 6-frame face clip and a short speech file, shared read-only by the cases."""
    folder = tmp_path_factory.mktemp("media")
    video = write_clip(folder / "face.mp4", moving_frames(astronaut(), 160, 120, 6, photo_height=110), rate=25)
    return video, write_wav(folder / "speech.mp4", tone(0.3))


def _unwritable(tmp_path: Path) -> Path:
    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    for folder in (ro, Path("/sys")):
        try:
            tempfile.TemporaryFile(dir=folder).close()
        except OSError:
            return folder
    pytest.skip("no folder here refuses new files (root, and /sys is writable)")


def _truncated_model(tmp_path: Path) -> Path:
    model = tmp_path / "model"
    shutil.copytree(SHIPPED_MODEL, model)
    weights = model / "vae" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return model


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


# (id, args with {video} {audio} {tmp} {ro} {model} placeholders, exit status, words the line must contain)
CASES = [
    # argparse: wrong type, choice or count
    ("dub-seed-not-int", "dub {video} {audio} -o {tmp}/o.mp4 --seed x", 2, "invalid int value: 'x'"),
    ("dub-guidance-3-values", "dub {video} {audio} -o {tmp}/o.mp4 --guidance 1,2,3", 2, "expected 'AUDIO,REF'"),
    ("dub-unknown-mask", "dub {video} {audio} -o {tmp}/o.mp4 --mask nose", 2, "invalid choice: 'nose'"),
    ("dub-unknown-paste", "dub {video} {audio} -o {tmp}/o.mp4 --paste all", 2, "invalid choice: 'all'"),
    ("dub-no-output", "dub {video} {audio}", 2, "required: -o/--output"),
    ("unknown-command", "frobnicate", 2, "invalid choice: 'frobnicate'"),
    ("train-unknown-stage", "train everything --config {tmp}/c.yaml", 2, "invalid choice: 'everything'"),
    # dub: numbers, model, inputs, output
    ("dub-unknown-preset", "dub {video} {audio} -o {tmp}/o.mp4 --model typo --random-weights", 1,
     "--random-weights builds a preset; choose --model official / tiny / small / small-128"),
    ("dub-preset-without-weights", "dub {video} {audio} -o {tmp}/o.mp4 --model tiny", 1, "is a preset, which has no trained weights"),
    ("dub-no-model-offline", "dub {video} {audio} -o {tmp}/o.mp4", 1,
     "the default is the released KeySync weights, which are not here yet and the Hugging Face hub cannot be reached"),
    ("dub-missing-model-folder", "dub {video} {audio} -o {tmp}/o.mp4 --model {tmp}/nomodel", 1, "nomodel does not exist"),
    ("dub-zero-steps", "dub {video} {audio} -o {tmp}/o.mp4 --steps 0", 1, "--steps 0: sampling needs at least 1 network call per stage"),
    ("dub-negative-steps", "dub {video} {audio} -o {tmp}/o.mp4 --steps -5", 1, "--steps -5"),
    ("dub-zero-deep-cache", "dub {video} {audio} -o {tmp}/o.mp4 --deep-cache 0", 1, "--deep-cache 0: give 1 (off) or N > 1"),
    ("dub-batch-size-0", "dub {video} {audio} -o {tmp}/o.mp4 --batch-size 0", 1, "--batch-size 0"),
    ("dub-huge-seed", f"dub {{video}} {{audio}} -o {{tmp}}/o.mp4 --seed {2**70}", 1, "is too large"),
    ("dub-negative-face-index", "dub {video} {audio} -o {tmp}/o.mp4 --face-index -1", 1, "--face-index -1 is negative"),
    ("dub-ref-frame-past-the-end", "dub {video} {audio} -o {tmp}/o.mp4 --ref-frame 99", 1, "--ref-frame 99 is not a frame of the video (its last is 5)"),
    ("dub-missing-video", "dub {tmp}/none.mp4 {audio} -o {tmp}/o.mp4", 1, "none.mp4 does not exist"),
    ("dub-missing-occluders", "dub {video} {audio} -o {tmp}/o.mp4 --occluders {tmp}/none.npy", 1, "none.npy does not exist"),
    ("dub-video-not-a-video", "dub {tmp}/junk.mp4 {audio} -o {tmp}/o.mp4", 1, "junk.mp4 cannot be read as media"),
    ("dub-audio-not-audio", "dub {video} {tmp}/text.wav -o {tmp}/o.mp4", 1, "text.wav cannot be read as media"),
    ("dub-audio-without-sound", "dub {video} {video} -o {tmp}/o.mp4", 1, "has no audio stream"),
    ("dub-output-is-a-folder", "dub {video} {audio} -o {tmp}/outdir", 1, "outdir is a folder; give the path of a file"),
    ("dub-output-exists", "dub {video} {audio} -o {tmp}/mine.mp4", 1, "mine.mp4 already exists; choose another output path or pass --overwrite"),
    ("dub-output-is-the-input", "dub {video} {audio} -o {video} --overwrite", 1, "is also an input"),
    ("dub-missing-output-folder", "dub {video} {audio} -o {tmp}/nope/o.mp4", 1, "nope does not exist; create it first"),
    ("dub-output-folder-is-a-file", "dub {video} {audio} -o {tmp}/mine.mp4/o.mp4", 1, "mine.mp4 is a file, not a folder"),
    ("dub-unwritable-folder", "dub {video} {audio} -o {ro}/o.mp4", 1, "cannot write in folder"),
    ("dub-bad-device", "dub {video} {audio} -o {tmp}/o.mp4 --device gpu0", 1, "--device 'gpu0' is not a device"),
    *([("dub-nvenc-without-a-gpu", "dub {video} {audio} -o {tmp}/o.mp4 --encoder h264_nvenc", 1,
        "h264_nvenc) does not open on this machine")] if not nvenc_opens() else []),
    *([("dub-fp8-without-an-fp8-gpu", "dub {video} {audio} -o {tmp}/o.mp4 --model small --fp8 on", 1,
        "--fp8 on needs an NVIDIA GPU with FP8 tensor cores")] if not torch.cuda.is_available() else []),
    ("dub-fp8-unknown-mode", "dub {video} {audio} -o {tmp}/o.mp4 --fp8 yes", 2, "argument --fp8: invalid choice: 'yes'"),
    ("dub-truncated-weights", "dub {video} {audio} -o {tmp}/o.mp4 --model {model}", 1,
     "vae/model.safetensors is incomplete or corrupt"),
    # the other commands
    ("faces-negative-face-index", "faces {video} --face-index -1", 1, "--face-index -1 is negative"),
    ("faces-zero-size", "faces {video} --size 0 -o {tmp}/p.png", 1, "--size 0"),
    ("faces-audio-not-audio", "faces {video} --audio {tmp}/text.wav -o {tmp}/p.mp4", 1, "text.wav cannot be read as media"),
    ("faces-json-is-a-folder", "faces {video} --json {tmp}/outdir", 1, "outdir is a folder"),
    ("occluders-frame-past-the-end", "occluders {video} -o {tmp}/m.npy --point 10,10 --frame 99", 1, "the clicked frame 99 is past the video's last frame (5)"),
    ("synth-zero-clips", "synth {tmp}/data --clips 0", 1, "--clips must be at least 1"),
    ("synth-unwritable-folder", "synth {ro}/data --clips 2", 1, "cannot write in folder"),
    ("bench-unknown-mode", "bench --modes loud --out {tmp}/b", 1, "--modes loud"),
    ("bench-few-steps", "bench --method keysync --steps 0 --out {tmp}/b", 1, "--steps 0"),
    ("bench-deep-cache-copy", "bench --method copy --deep-cache 2 --out {tmp}/b", 1, "--deep-cache only applies to --method keysync"),
    ("bench-fp8-copy", "bench --method copy --fp8 emulate --out {tmp}/b", 1, "--fp8 only applies to --method keysync"),
    ("bench-dtype-copy", "bench --method copy --dtype bfloat16 --out {tmp}/b", 1, "--dtype only applies to --method keysync"),
    ("demo-dtype-unknown", "demo --out-dir {tmp} --dtype float8", 2, "argument --dtype: invalid choice: 'float8'"),
    ("demo-zero-steps", "demo --out-dir {tmp} --steps 0", 1, "--steps 0"),
    ("demo-missing-folder", "demo --out-dir {tmp}/nope", 1, "nope is not a folder"),
    ("demo-truncated-weights", "demo --out-dir {tmp} --model {model} --quiet", 1, "is incomplete or corrupt"),
    ("convert-missing-checkpoint", "convert {tmp}/kf.pt {tmp}/ip.pt -o {tmp}/m", 1, "checkpoint not found: "),
    ("export-onto-its-input", "export {model} -o {model} --overwrite", 1, "is also an input"),
    ("export-truncated-weights", "export {model} -o {tmp}/m16", 1, "is incomplete or corrupt"),
    ("download-existing-folder", "download {tmp}/outdir", 1, "outdir already exists"),
    ("download-offline", "download {tmp}/new", 1, "cannot reach the Hugging Face hub (offline?); fetch toninio19/keysync"),
    ("prepare-unknown-model", "prepare {tmp}/outdir {tmp}/shards --model typo", 1, "model folder typo does not exist"),
    ("train-missing-config", "train vae --config {tmp}/none.yaml", 1, "cannot read config"),
    ("train-bad-set", "train vae --config {tmp}/c.yaml --set seed", 1, "--set seed: expected KEY=VALUE"),
    ("train-bad-type", "train vae --config {tmp}/c.yaml --set steps=many", 1, "config key steps: 'many' should be int (like its default, 1000)"),
]


@pytest.mark.parametrize("args, status, expect", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, media, capfd, monkeypatch, args, status, expect):
    video, audio = media
    monkeypatch.setattr("huggingface_hub.constants.HF_HOME", str(tmp_path / "hf-cache"))  # no released weights here
    (tmp_path / "outdir").mkdir()
    (tmp_path / "mine.mp4").write_bytes(b"mine")
    (tmp_path / "junk.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (tmp_path / "text.wav").write_text("not audio\n")
    (tmp_path / "c.yaml").write_text(f"model: small\ndata: {tmp_path}/shards\noutput: {tmp_path}/run\n")
    fill = dict(video=video, audio=audio, tmp=tmp_path, ro="", model="")
    if "{ro}" in args:
        fill["ro"] = _unwritable(tmp_path)
    if "{model}" in args:
        fill["model"] = _truncated_model(tmp_path)
    before, media_before = _snapshot(tmp_path), _snapshot(video.parent)
    ro_before = sorted(os.listdir(fill["ro"])) if fill["ro"] else None

    try:
        code = main(args.format(**fill).split())
    except SystemExit as exit:  # argparse's usage errors
        code = exit.code
    err = capfd.readouterr().err.strip().splitlines()

    assert code == status
    command = args.split()[0]
    prefix = "keysync: error: " if command == "frobnicate" else f"keysync {command}: error: "
    assert len(err) == 1 and err[0].startswith(prefix), err
    assert "Traceback" not in err[0] and expect in err[0], err
    if "released KeySync weights" in expect:  # no model and none here: the line says how to get one
        assert all(words in err[0] for words in ("keysync download", "keysync convert", "--model small")), err
    assert _snapshot(tmp_path) == before and _snapshot(video.parent) == media_before
    if fill["ro"]:
        assert sorted(os.listdir(fill["ro"])) == ro_before


def test_building_the_parser_imports_no_heavy_module():
    """``keysync --help`` must answer at once: registering the subcommands may not load torch and co."""
    heavy = ("torch", "diffusers", "transformers", "av", "cv2", "numpy")
    code = f"import sys, keysync.cli; keysync.cli.build_parser(); print(*[m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []


@pytest.mark.parametrize("delay", [0.0, 0.3])
def test_ctrl_c_at_start_up_is_one_line_and_exit_130(tmp_path, media, delay):
    """SIGINT while ``keysync dub`` parses and imports its modules: no traceback, nothing written.

    The child says "ready" as ``main`` starts building the parser, and the signal is sent ``delay`` seconds
    later (parsing; then the handler's imports of torch and the pipeline). Not a fixed delay from the
    process's start: interpreter start-up (site.py) comes before any keysync code, is Python's own, and on
    a loaded machine can outlast any delay, which would make the test flaky."""
    video, audio = media
    out = tmp_path / "out.mp4"
    # a shell's background job (CI under nohup, say) starts with SIGINT ignored; a terminal's ^C is not
    code = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "import sys, keysync.cli as cli; build = cli.build_parser\n"
            "def announced():\n    print('ready', flush=True)\n    return build()\n"
            "cli.build_parser = announced\n"
            f"sys.exit(cli.main(['dub', {str(video)!r}, {str(audio)!r}, '-o', {str(out)!r}, '--model', {str(SHIPPED_MODEL)!r}, '--quiet']))")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "ready\n"
    time.sleep(delay)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert err.strip().splitlines() == ["keysync dub: interrupted"]
    assert list(tmp_path.iterdir()) == []


def test_model_names_resolve_to_folders(tmp_path, monkeypatch):
    """No model: the released weights' folder in the Hugging Face cache once converted there; ``small``:
    the shipped demo model; a folder: itself."""
    from keysync.models.download import released_model_dir, resolve_model

    monkeypatch.setattr("huggingface_hub.constants.HF_HOME", str(tmp_path / "hf"))
    released = released_model_dir()
    assert released == tmp_path / "hf" / "keysync" / "released"
    released.mkdir(parents=True)
    (released / "keysync.json").write_text("{}")
    assert resolve_model(None) == released and resolve_model("toninio19/keysync") == released
    assert resolve_model("small") == SHIPPED_MODEL
    assert resolve_model(str(tmp_path)) == tmp_path


def test_every_command_takes_quiet_and_verbose(capsys):
    """--quiet leaves warnings and errors, the default adds the stages' progress notes, --verbose debugging."""
    import logging

    from keysync.cli import _show_notes, build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, sub in commands.items():
        assert {"--quiet", "--verbose"} <= set(sub._option_string_actions), name
    log = logging.getLogger("keysync.models.convert")
    for level, shown in ((logging.WARNING, ["keysync: a warning"]), (logging.INFO, ["a note", "keysync: a warning"]),
                         (logging.DEBUG, ["a detail", "a note", "keysync: a warning"])):
        _show_notes(level)
        log.debug("a detail")
        log.info("a note")
        log.warning("a warning")
        assert capsys.readouterr().err.splitlines() == shown
    _show_notes()
