"""Writing a file or folder so that it is either complete or absent: no half-written output after a crash
or ^C, and with the permissions the umask gives, as any other tool's output (``tempfile`` makes its files
0600 and its folders 0700 whatever the umask, which a web server or another user could not read)."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import Callable


def _create_beside(path: str | Path, suffix: str, create: Callable[[Path], None]) -> Path:
    """``create`` a fresh hidden name beside ``path`` (it fails with FileExistsError if taken)."""
    path = Path(path)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{suffix}"
        try:
            create(tmp)
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def temp_file(path: str | Path, suffix: str = ".partial") -> Path:
    """An empty hidden file beside ``path``, 0666 less the umask, for writing into."""
    return _create_beside(path, suffix, lambda tmp: os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)))


def temp_folder(path: str | Path, suffix: str = ".partial") -> Path:
    """An empty hidden folder beside ``path``, 0777 less the umask, for writing into."""
    return _create_beside(path, suffix, lambda tmp: tmp.mkdir())


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` writes a temporary file in ``path``'s folder, which is renamed to ``path`` only once
    ``write`` returns; on any error it is removed and ``path`` is left as it was."""
    path = Path(path)
    tmp = temp_file(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_tensors(tensors: dict, path: str | Path, metadata: dict | None = None) -> None:
    """``safetensors.torch.save_file``, but with the umask's permissions: it creates its files 0600."""
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)
    os.chmod(path, 0o666 & ~current_umask())


def current_umask() -> int:
    """The process's umask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def replace_folder(tmp: Path, path: Path) -> None:
    """Move a finished temporary folder onto ``path``, removing what was there (the caller checked it may)."""
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
