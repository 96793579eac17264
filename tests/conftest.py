import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT.parent / "shared" / "fixtures"
OFFICIAL_TINY = FIXTURES / "official-tiny"
MANIFESTS = FIXTURES / "manifests"


@pytest.fixture(autouse=True)
def _float32_cpu():
    torch.set_default_dtype(torch.float32)
    yield


def require_fixtures():
    if not OFFICIAL_TINY.is_dir():
        pytest.skip(f"golden fixtures not found at {OFFICIAL_TINY}")


def assert_umask_modes(*paths):
    """Every file and folder written under ``paths`` has the permissions the umask gives (0644 and 0755
    under 022), as any other tool's output: none is left 0600 or 0700 by a temporary-file helper."""
    from keysync.files import current_umask

    mask = current_umask()
    for path in paths:
        for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
            want = (0o777 if item.is_dir() else 0o666) & ~mask
            assert item.stat().st_mode & 0o777 == want, f"{item} is {item.stat().st_mode & 0o777:o}, not {want:o}"
