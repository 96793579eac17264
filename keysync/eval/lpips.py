"""LPIPS v0.1 with AlexNet, as the ``lpips`` package (richzhang/PerceptualSimilarity) computes it.

``lpips`` builds its backbone from torchvision, which this project cannot install, so AlexNet's ``features`` are
re-stated here in plain torch with torchvision's indices: torchvision's ``alexnet-owt-7be5be79.pth`` loads by
its ``features.*`` keys (its classifier is not used) and lpips' ``weights/v0.1/alex.pth`` by its ``lin{k}.model.1``
keys. The distance: images in [-1, 1]; lpips' ScalingLayer ((x - shift) / scale per channel); the ReLU
outputs after AlexNet's 5 convolutions; each unit-normalised over channels (eps 1e-10 added to the norm);
squared difference; the 1 x 1 linear layer (no bias; dropout is off at eval); mean over the map; sum over
the 5 layers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import KeySyncError

SHIFT = (-0.030, -0.088, -0.188)  # lpips' ScalingLayer
SCALE = (0.458, 0.448, 0.450)
CHANNELS = (64, 192, 384, 256, 256)
TAPS = (1, 4, 7, 9, 11)  # the ReLUs after conv1..conv5 in AlexNet.features
MIN_SIZE = 31  # the smallest side AlexNet's five layers accept (two 3 x 3 max pools after an 11 x 11 / 4 conv)


class AlexNetFeatures(nn.Module):
    """torchvision AlexNet's ``features`` (indices kept, so its state-dict keys), giving the 5 ReLU outputs."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, stride=2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, stride=2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(3, stride=2),
        )

    def forward(self, x):
        taps = []
        for i, layer in enumerate(self.features[: TAPS[-1] + 1]):
            x = layer(x)
            if i in TAPS:
                taps.append(x)
        return taps


class _Linear(nn.Module):
    """lpips' NetLinLayer: dropout (off at eval), 1 x 1 convolution to one channel without bias."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class LinearLayers(nn.Module):
    """The five ``lin{k}`` layers, keyed as in ``alex.pth``."""

    def __init__(self):
        super().__init__()
        for k, c in enumerate(CHANNELS):
            setattr(self, f"lin{k}", _Linear(c))


class LPIPS(nn.Module):
    def __init__(self):
        super().__init__()
        self.alexnet = AlexNetFeatures()
        self.linear = LinearLayers()
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(N,) distances of (N, 3, H, W) images in [-1, 1]."""
        fa, fb = (self.alexnet((x - self.shift) / self.scale) for x in (a, b))
        total = 0
        for k, (x, y) in enumerate(zip(fa, fb)):
            x = x / (torch.sqrt((x**2).sum(dim=1, keepdim=True)) + 1e-10)
            y = y / (torch.sqrt((y**2).sum(dim=1, keepdim=True)) + 1e-10)
            total = total + getattr(self.linear, f"lin{k}").model((x - y) ** 2).mean(dim=(2, 3))
        return total[:, 0]


def load_lpips(alexnet_path, linear_path) -> LPIPS:
    """LPIPS from torchvision's ``alexnet-owt-7be5be79.pth`` and lpips' v0.1 ``alex.pth`` (or safetensors copies)."""
    from .weights import load_checked, read_state_dict

    net = LPIPS()
    alexnet = read_state_dict(alexnet_path, "lpips_alexnet")
    load_checked(net.alexnet, {k: v for k, v in alexnet.items() if not k.startswith("classifier.")}, alexnet_path, "lpips_alexnet")
    load_checked(net.linear, read_state_dict(linear_path, "lpips_linear"), linear_path, "lpips_linear")
    return net.eval()


def as_input(image: np.ndarray) -> torch.Tensor:
    """(1, 3, H, W) in [-1, 1] of an (H, W, 3) uint8 RGB image (lpips' ``im2tensor``: x / 127.5 - 1)."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 127.5 - 1


def lpips_distance(net: LPIPS, a: np.ndarray, b: np.ndarray) -> float:
    """LPIPS of two (H, W, 3) uint8 RGB images of the same size (each side at least ``MIN_SIZE``)."""
    if a.shape != b.shape or min(a.shape[:2]) < MIN_SIZE:
        raise KeySyncError(f"LPIPS compares images of one size, each side at least {MIN_SIZE} px; got {a.shape} and {b.shape}")
    return float(net(as_input(a), as_input(b))[0])
