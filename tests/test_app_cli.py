"""``keysync app`` refuses a bad start in one line before importing the page, and offers models by name only."""

import pytest

from keysync import cli
from keysync.app.commands import model_choices
from keysync.app.page import DEFAULT_FACE, face_choice_index, one_line
from keysync.errors import KeySyncError
from keysync.models.model import shipped_model_dir


@pytest.mark.parametrize("args, message", [
    (["--model", "{tmp}/missing"], "is not a folder; give a model folder made by `keysync download` or `keysync convert`"),
    (["--model", "{tmp}"], "is not a readable KeySync model folder"),
    (["--port", "70000"], "--port 70000: give a port between 1 and 65535"),
    (["--max-seconds", "0"], "--max-seconds 0.0: give a positive number"),
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
    import shutil

    for folder in (tmp_path / "a" / "small", tmp_path / "b" / "small"):
        shutil.copytree(shipped_model_dir(), folder)
    choices = model_choices([str(tmp_path / "a" / "small"), str(tmp_path / "b" / "small")])
    assert choices == {"small-2": str(tmp_path / "a" / "small"), "small-3": str(tmp_path / "b" / "small"), "small": str(shipped_model_dir())}


def test_face_choices_and_messages():
    assert face_choice_index(DEFAULT_FACE) is None and face_choice_index("face 3: frames 0-9, 20-30") == 3
    err = KeySyncError("no face found in /srv/tmp/keysync-app-x/ab12/talk.mp4; give a video in which the speaker's face is visible")
    assert one_line(err, "/srv/tmp/keysync-app-x/ab12/talk.mp4") == "no face found in talk.mp4; give a video in which the speaker's face is visible"
    assert one_line(ValueError("bad\nthing")) == "ValueError: bad thing"
