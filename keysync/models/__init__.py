"""Model core: the KeySync networks, the SVD VAE, presets, model folders and checkpoint conversion.

Names are imported on first use, so that ``keysync --help`` does not load torch and diffusers.
"""

import importlib

_EXPORTS = {
    "KeySyncModel": ".model",
    "KeySyncNet": ".network",
    "SCALE_FACTOR": ".network",
    "KeySyncVAE": ".vae",
    "PRESETS": ".presets",
    "preset": ".presets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
