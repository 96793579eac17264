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
