"""``keysync app`` refuses a bad start in one line before importing the page, offers models (and SAM 2) by
name only; a session's files go when it ends, or after the idle timeout, and never come back."""

import shutil
import time

import pytest

from keysync import cli
from keysync.app.commands import model_choices, segmenter_choice
from keysync.app.page import (
    DEFAULT_FACE,
    Server,
    SessionEnded,
    face_choice_index,
    one_line,
)
from keysync.errors import KeySyncError
from keysync.models.model import shipped_model_dir


@pytest.mark.parametrize("args, message", [
    (["--model", "{tmp}/missing"], "is not a folder; give a model folder made by `keysync download` or `keysync convert`"),
    (["--model", "{tmp}"], "is not a readable KeySync model folder"),
    (["--port", "70000"], "--port 70000: give a port between 1 and 65535"),
    (["--max-seconds", "0"], "--max-seconds 0.0: give a positive number"),
    (["--session-timeout", "-1"], "--session-timeout -1.0: give a positive number"),
    (["--segmenter", "{tmp}/missing"], "is neither a folder nor a model in the Hugging Face cache; where there is internet run `hf download"),
    (["--segmenter", "{tmp}"], "is not a SAM 2 model folder (a config.json and its weights)"),
    (["--device", "cuda:7"], "--device cuda:7: no such CUDA GPU here"),
])
def test_a_bad_start_is_one_line(tmp_path, capsys, args, message):
    assert cli.main(["app"] + [a.format(tmp=tmp_path) for a in args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("keysync app: error: ") and message in err[0], err
    assert list(tmp_path.iterdir()) == []  # no scratch folder made


def test_models_are_offered_by_name(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in (tmp_path / "a" / "small", tmp_path / "b" / "small"):
        shutil.copytree(shipped_model_dir(), folder)
    choices = model_choices([str(tmp_path / "a" / "small"), str(tmp_path / "b" / "small")])
    assert choices == {"small-2": str(tmp_path / "a" / "small"), "small-3": str(tmp_path / "b" / "small"), "small": str(shipped_model_dir())}


def test_face_choices_and_messages():
    assert face_choice_index(DEFAULT_FACE) is None and face_choice_index("face 3: frames 0-9, 20-30") == 3
    err = KeySyncError("no face found in /srv/tmp/keysync-app-x/ab12/talk.mp4; give a video in which the speaker's face is visible")
    assert one_line(err, "/srv/tmp/keysync-app-x/ab12/talk.mp4") == "no face found in talk.mp4; give a video in which the speaker's face is visible"
    assert one_line(ValueError("bad\nthing")) == "ValueError: bad thing"


def test_segmenter_is_a_sam2_folder_or_the_default_in_the_hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    folder = tmp_path / "sam2"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "sam2_video"}')
    with pytest.raises(KeySyncError, match="not a SAM 2 model folder"):
        segmenter_choice(str(folder))  # no weights
    (folder / "model.safetensors").write_bytes(b"")
    assert segmenter_choice(str(folder)) == str(folder.resolve())

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert segmenter_choice(None) is None  # nothing cached: the page offers no clicks (nothing is downloaded)
    repo = tmp_path / "hub" / "models--facebook--sam2.1-hiera-tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    shutil.copytree(folder, repo / "snapshots" / "0123abcd")
    assert segmenter_choice(None) == str(repo / "snapshots" / "0123abcd")  # the default SAM 2, where its weights are present
    assert segmenter_choice("facebook/sam2.1-hiera-tiny") == str((repo / "snapshots" / "0123abcd").resolve())


def test_a_session_ends_once_and_its_files_go(tmp_path):
    server = Server({}, tmp_path, session_timeout=100)
    upload = tmp_path / "0a1b2c" / "talk.mp4"  # Gradio's upload cache lives in the scratch folder: one folder per upload
    upload.parent.mkdir()
    upload.write_bytes(b"video")
    for session in ("a", "b"):
        with server.session(session, str(upload)) as folder:
            (folder / "faces.png").write_bytes(b"png")

    with server.session("a") as folder:  # a's tab closes while one of its events runs
        server.end_session("a")
        assert not folder.exists()
        folder.mkdir()  # the event goes on writing (as a preview or a job would): the folder comes back...
        (folder / "late.png").write_bytes(b"png")
    assert not folder.exists()  # ...and goes when the event ends
    with pytest.raises(SessionEnded, match="reload the page"), server.session("a"):
        pass  # an ended session gets no folder back
    assert not server.folder("a").exists() and upload.exists()  # b still uses the upload

    with server.session("c") as running:  # a job runs: its session is kept however long it takes
        start = time.monotonic()
        assert server.sweep(now=start + 50) == []
        assert server.sweep(now=start + 101) == ["b"]  # idle for longer than the timeout: ended as if its tab closed
        assert running.is_dir() and not server.folder("b").exists() and not upload.parent.exists()
    (tmp_path / "sessions" / "stray").mkdir()  # a folder no open session owns
    assert server.sweep(now=time.monotonic() + 50) == [] and not (tmp_path / "sessions" / "stray").exists() and running.is_dir()
    assert server.sweep(now=time.monotonic() + 101) == ["c"] and not running.exists()
