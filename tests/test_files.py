"""write_atomic: the output is complete or untouched, and no temporary file stays behind."""

import os

import pytest

from keysync.files import write_atomic


def test_write_atomic_replaces_only_when_complete(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("old")

    def fails(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(out, fails)
    assert out.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    write_atomic(out, lambda tmp: tmp.write_text("new"))
    assert out.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_outputs_get_the_umask_permissions(tmp_path, mask):
    """Files 0666 and folders 0777 less the umask, as any tool's output; tempfile alone would give 0600/0700."""
    import numpy as np

    from keysync.files import temp_folder
    from keysync.media.writer import VideoWriter

    old = os.umask(mask)
    try:
        write_atomic(tmp_path / "a.json", lambda tmp: tmp.write_text("{}"))
        folder = temp_folder(tmp_path / "model")
        with VideoWriter(tmp_path / "v.mp4", 16, 16) as writer:
            writer.write(np.zeros((16, 16, 3), np.uint8), 0.0)
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "v.mp4").stat().st_mode & 0o777 == 0o666 & ~mask
    assert folder.stat().st_mode & 0o777 == 0o777 & ~mask
