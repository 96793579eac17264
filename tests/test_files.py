"""write_atomic: the output is complete or untouched, and no temporary file stays behind."""

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
