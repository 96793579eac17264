"""Training: the official recipe (noise levels, dropout, losses, optimiser, freezing).

Names are imported on first use, so that ``keysync --help`` (which imports ``keysync.train.commands``)
does not load torch and diffusers.
"""

import importlib

_EXPORTS = {
    **dict.fromkeys(["Recipe", "TrainConfig", "load_config"], ".config"),
    **dict.fromkeys(["diffusion_loss", "freeze_temporal_layers", "make_optimizer", "sample_sigmas", "training_step"], ".recipe"),
    "train": ".trainer",
    "train_stage": ".stage",
}

__all__ = ["TrainConfig", "load_config", "train", "train_stage", "Recipe", "diffusion_loss", "freeze_temporal_layers", "make_optimizer", "sample_sigmas", "training_step"]


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
