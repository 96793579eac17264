"""Lip-sync and quality metrics on any dubbed video (``keysync eval``): SyncNet's LSE-C / LSE-D / offset as the
reference computes them, PSNR / SSIM against the source, LipLeak on real video.

Names are imported on first use, so that ``keysync --help`` does not load torch.
"""

import importlib

_EXPORTS = {
    **dict.fromkeys(["SyncNet", "SyncScores", "load_syncnet", "score_sync", "convert_syncnet"], ".syncnet"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
