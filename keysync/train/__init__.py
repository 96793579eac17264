"""Training: the official recipe (noise levels, dropout, losses, optimiser, freezing)."""

from .recipe import Recipe, diffusion_loss, freeze_temporal_layers, make_optimizer, sample_sigmas, training_step
from .trainer import TrainConfig, train

__all__ = ["TrainConfig", "train", "Recipe", "diffusion_loss", "freeze_temporal_layers", "make_optimizer", "sample_sigmas", "training_step"]
