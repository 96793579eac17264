"""FVD: the Fréchet distance of I3D features of 16-frame windows, with the I3D most FVD code runs.

The reference is the TorchScript ``i3d_torchscript.pt`` (the Kinetics-400 I3D of the original TensorFlow FVD,
exported by StyleGAN-V's authors; fvd-comparison, StyleGAN-V, and the many repositories that copy them load
it), called as ``detector(videos, rescale=False, resize=False, return_features=True)`` on (N, 3, 16, 224, 224)
videos in [-1, 1] for its 400 pre-softmax features. ``torch.jit.load`` runs the TorchScript in the file
(TorchScript's own interpreter, not pickled Python), from the path the user gives. The frames are resized to
224 x 224 bilinearly (``align_corners=False``, the whole frame squashed) and scaled as 2 x / 255 - 1, as the
original FVD's ``preprocess`` and cd-fvd's ``preprocess_i3d`` do. torchvision-based FVD packages cannot be
installed here; this needs only torch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import KeySyncError

I3D_SIZE = 224
WINDOW_FRAMES = 16  # frames per FVD clip (StyleGAN-V's and most papers' FVD_16)
FEATURES = 400


def load_i3d(path):
    """The TorchScript I3D from ``i3d_torchscript.pt``, in eval mode on the CPU."""
    from .weights import require_file

    path = require_file(path, "i3d")
    try:
        detector = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, OSError) as err:
        raise KeySyncError(f"cannot read {path} as TorchScript ({' '.join(str(err).split())[:200]}); "
                           "give i3d_torchscript.pt") from None
    return detector.eval()


def prepare(frame: np.ndarray) -> torch.Tensor:
    """(3, 224, 224) float32 in [-1, 1] of an (H, W, 3) uint8 RGB frame."""
    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(I3D_SIZE, I3D_SIZE), mode="bilinear", align_corners=False)
    return (2 * x / 255 - 1)[0]


@torch.no_grad()
def i3d_features(detector, windows: torch.Tensor) -> np.ndarray:
    """(N, 400) float64 features of (N, 3, 16, 224, 224) windows in [-1, 1]."""
    out = detector(windows, rescale=False, resize=False, return_features=True)
    if out.ndim != 2 or out.shape[0] != len(windows):
        raise KeySyncError(f"the I3D gave features of shape {tuple(out.shape)} for {len(windows)} clips; "
                           "give i3d_torchscript.pt")
    return out.double().numpy()


def window(prepared: list[torch.Tensor]) -> torch.Tensor:
    """(3, 16, 224, 224): 16 ``prepare``d frames stacked on the time axis."""
    return torch.stack(prepared, dim=1)
