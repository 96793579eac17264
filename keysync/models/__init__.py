"""Model core: the KeySync networks, the SVD VAE, presets, model folders and checkpoint conversion."""

from .model import KeySyncModel
from .network import SCALE_FACTOR, KeySyncNet
from .presets import PRESETS, preset
from .vae import KeySyncVAE

__all__ = ["PRESETS", "SCALE_FACTOR", "KeySyncModel", "KeySyncNet", "KeySyncVAE", "preset"]
