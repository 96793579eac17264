"""The mouth reader: a small CNN that reads the five mouth parameters from a lower-face crop.

The crop is placed from landmarks that do not move with the mouth (the four eye corners), so the same
crop can be taken from any method's output using the source video's landmarks. The network is trained on
renders of the synthetic world (``python -m keysync.bench.train_reader``) and its fp16 weights ship in the
package (``weights/mouth_reader.safetensors``); the file's metadata carries the LipLeak threshold
calibrated on renders (see ``keysync.bench.metrics``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

CROP_SIZE = 64
WEIGHTS = Path(__file__).parent / "weights" / "mouth_reader.safetensors"
EYE_CORNERS = (36, 39, 42, 45)


def crop_transforms(landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Affine maps (T, 2, 3) from frame pixels to a ``size`` x ``size`` lower-face crop.

    The crop is centred 1.15 eye-distances below the middle of the eyes, perpendicular to the eye line,
    and 1.5 eye-distances wide, so it holds mouth, lips and chin for any head roll and scale.
    """
    lm = np.asarray(landmarks, np.float64).reshape(-1, 68, 2)
    left = lm[:, [36, 39]].mean(1)
    right = lm[:, [42, 45]].mean(1)
    axis = right - left
    d = np.linalg.norm(axis, axis=1, keepdims=True)
    ex = axis / d
    ey = np.stack([-ex[:, 1], ex[:, 0]], 1)  # down, perpendicular to the eye line
    centre = (left + right) / 2 + ey * 1.15 * d
    side = 1.5 * d
    scale = size / side  # (T, 1)
    # crop = scale * R^T (p - centre) + size/2
    A = np.stack([ex, ey], 1) * scale[:, :, None]  # rows: ex, ey
    b = size / 2 - np.einsum("tij,tj->ti", A, centre)
    return np.concatenate([A, b[:, :, None]], 2)


def mouth_crops(frames: np.ndarray, landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """Lower-face crops (T, size, size, 3) uint8 from frames (T, H, W, 3) and their landmarks (T, 68, 2)."""
    import cv2

    maps = crop_transforms(landmarks, size)
    out = np.empty((len(frames), size, size, 3), np.uint8)
    for i, (frame, m) in enumerate(zip(frames, maps)):
        # pre-blur large frames so the warp does not alias
        factor = 1.0 / np.sqrt(abs(np.linalg.det(m[:, :2])))
        if factor > 1.5:
            frame = cv2.GaussianBlur(frame, (0, 0), 0.4 * factor)
        out[i] = cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


class MouthReader(nn.Module):
    """Crop (B, 3, 64, 64) in [0, 1] -> mouth parameters (B, 5) in [0, 1]."""

    def __init__(self, width: int = 32, n_params: int = 5) -> None:
        super().__init__()
        layers, c_in = [], 3
        for c_out in (width, width * 2, width * 2, width * 4):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            layers += [nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * 16, 128), nn.ReLU(inplace=True), nn.Linear(128, n_params))
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.features(x)))


def save_reader(model: MouthReader, path: Path, metadata: dict) -> None:
    """fp16 safetensors; ``metadata`` (calibration, training command) is stored as JSON strings."""
    from ..files import save_tensors, write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(torch.float16 if v.is_floating_point() else v.dtype).contiguous() for k, v in model.state_dict().items()}
    meta = {k: json.dumps(v) for k, v in {**metadata, "width": model.width}.items()}
    write_atomic(path, lambda tmp: save_tensors(tensors, tmp, meta))


class LoadedReader:
    """The shipped (or given) mouth reader, ready to read frames."""

    def __init__(self, path: str | Path = WEIGHTS) -> None:
        from safetensors import safe_open
        from safetensors.torch import load_file

        from ..errors import KeySyncError

        path = Path(path)
        if not path.is_file():
            raise KeySyncError(f"mouth reader weights not found at {path}; reinstall keysync or train them (python -m keysync.bench.train_reader)")
        with safe_open(str(path), "pt") as f:
            self.metadata = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
        self.model = MouthReader(width=int(self.metadata.get("width", 32)))
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
        self.model.load_state_dict(state, strict=True)
        self.model.eval()

    @torch.no_grad()
    def read(self, frames: np.ndarray, landmarks: np.ndarray, batch: int = 256) -> np.ndarray:
        """Mouth parameters (T, 5) of frames (T, H, W, 3) uint8 RGB, cropped with landmarks (T, 68, 2)."""
        crops = mouth_crops(frames, landmarks)
        out = []
        for i in range(0, len(crops), batch):
            x = torch.from_numpy(crops[i : i + batch]).permute(0, 3, 1, 2).float() / 255.0
            out.append(self.model(x).numpy())
        return np.concatenate(out) if out else np.zeros((0, 5), np.float32)
