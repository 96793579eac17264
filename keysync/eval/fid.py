"""FID as the standard FID code (pytorch-fid) computes it: InceptionV3 pool features, Fréchet distance.

pytorch-fid, torch-fidelity, clean-fid and torchmetrics all import torchvision, which this project cannot
install, so the network is re-stated here in plain torch, with torchvision's module names so that pytorch-fid's
published ``pt_inception-2015-12-05-6726825d.pth`` (the TF FID Inception's weights) loads by its own keys.
What makes it the FID Inception and not torchvision's (each changes the features):

- the mixed blocks' average pools leave the padding out of the mean (``count_include_pad=False``, as
  TensorFlow pools) and the last block (``Mixed_7c``) max-pools its pool branch;
- frames are RGB in [0, 1], resized to 299 x 299 bilinearly (``align_corners=False``, no antialiasing, the
  whole frame squashed as pytorch-fid does with any image) and scaled to [-1, 1];
- the features are the 2048 outputs of the final average pool; 1008 classes in ``fc`` (loaded, unused).

The Fréchet distance is pytorch-fid's ``calculate_frechet_distance`` (scipy's ``sqrtm``, an ``eps`` on the
diagonals when the product is singular, a negligible imaginary part dropped). From features, a set with fewer
samples than dimensions (a clip has far fewer than 2048 frames) takes the same trace from the singular
values of the small cross product instead: exact, milliseconds where ``sqrtm`` of 2048 x 2048 takes a
minute, and no ``eps`` needed (see ``frechet_distance_of_features``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import KeySyncError

INCEPTION_SIZE = 299
FEATURES = 2048
CLASSES = 1008  # the TF Inception's classes (fc is in the weight file; FID does not use it)


class BasicConv2d(nn.Module):
    """Convolution without bias, BatchNorm (eps 0.001), ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x):
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)  # TensorFlow's pool: padding not counted


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool(x)),
        ], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        dbl = x
        for k in range(1, 6):
            dbl = getattr(self, f"branch7x7dbl_{k}")(dbl)
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            dbl,
            self.branch_pool(_avg_pool(x)),
        ], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        b = x
        for k in range(1, 5):
            b = getattr(self, f"branch7x7x3_{k}")(b)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """``pool``: "avg" in ``Mixed_7b``, "max" in ``Mixed_7c`` (the FID Inception's quirk)."""

    def __init__(self, cin: int, pool: str):
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = _avg_pool(x) if self.pool == "avg" else F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(dbl), self.branch3x3dbl_3b(dbl),
            self.branch_pool(pooled),
        ], 1)


class FIDInceptionV3(nn.Module):
    """The TF FID Inception (pytorch-fid's ``fid_inception_v3``) up to its 2048 pool features; module names
    and so state-dict keys are torchvision's ``Inception3`` without ``AuxLogits``."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, "avg")
        self.Mixed_7c = InceptionE(2048, "max")
        self.fc = nn.Linear(FEATURES, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 299, 299) in [-1, 1] -> (N, 2048) pool features."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean(dim=(2, 3))


def load_inception(path) -> FIDInceptionV3:
    """The FID Inception from pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (or a safetensors copy)."""
    from .weights import load_checked, read_state_dict

    return load_checked(FIDInceptionV3(), read_state_dict(path, "inception"), path, "inception")


def prepare(frame: np.ndarray) -> torch.Tensor:
    """(3, 299, 299) float32 in [-1, 1] of an (H, W, 3) uint8 RGB frame: /255 (as ``ToTensor``), bilinear
    resize, 2x - 1, as pytorch-fid feeds an image to the network."""
    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
    return (2 * x - 1)[0]


@torch.no_grad()
def inception_features(net: FIDInceptionV3, prepared: list[torch.Tensor] | torch.Tensor) -> np.ndarray:
    """(N, 2048) float64 features of ``prepare``d frames."""
    batch = torch.stack(list(prepared)) if not isinstance(prepared, torch.Tensor) else prepared
    return net(batch).double().numpy()


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """pytorch-fid's ``calculate_frechet_distance``: ||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrt(S1 S2)), the
    square root by scipy's ``sqrtm``; ``eps`` added to both diagonals when the product's root is not finite;
    the imaginary part dropped when it is negligible on the diagonal (an error otherwise, as there)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"means {mu1.shape} / {mu2.shape} and covariances {sigma1.shape} / {sigma2.shape} differ")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise KeySyncError(f"the Fréchet distance's matrix square root has an imaginary part of "
                               f"{np.max(np.abs(covmean.imag)):.3g}; the features are degenerate")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_distance_of_features(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance of two sets of features (N, D) as pytorch-fid takes it (mean, ``np.cov``).

    With at least D samples in each set: ``frechet_distance``. With fewer (per clip), tr sqrt(S1 S2) is the
    sum of the singular values of Ac Bc^T / sqrt((n1 - 1)(n2 - 1)) (Ac, Bc: the centred features): S1 S2 =
    Ac^T Ac Bc^T Bc / ((n1 - 1)(n2 - 1)) has the nonzero eigenvalues of (Ac Bc^T)(Ac Bc^T)^T, so the same
    trace sqrtm would give, from an n1 x n2 matrix. NaN with fewer than 2 samples in either set."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    if min(len(a), len(b)) >= a.shape[1]:
        return frechet_distance(mu1, np.cov(a, rowvar=False), mu2, np.cov(b, rowvar=False))
    ac, bc = a - mu1, b - mu2
    trace_sqrt = np.linalg.svd(ac @ bc.T, compute_uv=False).sum() / np.sqrt((len(a) - 1) * (len(b) - 1))
    trace1 = (ac**2).sum() / (len(a) - 1)
    trace2 = (bc**2).sum() / (len(b) - 1)
    diff = mu1 - mu2
    return float(diff.dot(diff) + trace1 + trace2 - 2 * trace_sqrt)
