"""LSE-C, LSE-D and the AV offset as the reference SyncNet evaluation computes them.

The reference is ``SyncNetInstance.evaluate`` of joonson/syncnet_python at 6efbb1c, the code lip-sync papers
ran. It is re-stated here because its packaged form (``syncnet-python``) needs torchvision, scenedetect and
opencv-contrib and runs ffmpeg on files, none of which this project can install or wants; the network keeps
the reference's module layout, so its released ``syncnet_v2.model`` loads by key name. What the reference
does, and this module does too (each one changes the scores if done otherwise):

- faces: 224 x 224, **BGR**, raw 0..255 floats (no mean, no /255), 25 fps;
- audio: 16 kHz mono, MFCC of the **raw int16 values** with python_speech_features' defaults (13
  coefficients, c0 replaced by the log energy), 4 MFCC frames per video frame;
- windows: ``N = min(T, samples // 640) - 5`` of them (not T - 4), window v = frames v..v+4 and MFCC
  frames 4v..4v+19; the network runs in batches of 20 (BatchNorm in eval mode);
- distances: audio embeddings padded with 15 zero rows each side, compared (padding included) with
  ``pairwise_distance`` (eps 1e-6) at the 31 shifts; LSE-D = min of the mean distance over windows, LSE-C =
  its median minus that min, offset = 15 - argmin (audio leading the video by k frames adds k).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..constants import SAMPLE_RATE, SAMPLES_PER_FRAME
from ..errors import KeySyncError

VSHIFT = 15  # offsets searched: -15..15 frames (run_syncnet.py's default)
BATCH_SIZE = 20  # windows per forward (the reference's default; a different batch changes float rounding)
WINDOW = 5  # video frames per SyncNet window
MFCC_PER_FRAME = 4  # 100 MFCC frames per second / 25 fps
FACE_SIZE = 224
SYNCNET_FILE = "syncnet_v2.model"
SYNCNET_URL = "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model"


def _conv_block(conv: nn.Module, channels: int, norm, pool: nn.Module | None = None) -> list[nn.Module]:
    return [conv, norm(channels), nn.ReLU(inplace=True), *([pool] if pool is not None else [])]


def _embedding_head(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Linear(512, width))


class SyncNet(nn.Module):
    """SyncNet's 'S' model: a 3-D CNN over 5 lip frames and a 2-D CNN over 20 MFCC frames, each ending in a
    ``width``-d embedding. The ``nn.Sequential`` indices are the reference's, so are its state-dict keys."""

    def __init__(self, width: int = 1024):
        super().__init__()
        conv2, conv3, pool2, pool3 = nn.Conv2d, nn.Conv3d, nn.MaxPool2d, nn.MaxPool3d
        norm2, norm3 = nn.BatchNorm2d, nn.BatchNorm3d
        self.netcnnaud = nn.Sequential(
            *_conv_block(conv2(1, 64, 3, padding=1), 64, norm2, pool2(1, 1)),
            *_conv_block(conv2(64, 192, 3, padding=1), 192, norm2, pool2(3, stride=(1, 2))),
            *_conv_block(conv2(192, 384, 3, padding=1), 384, norm2),
            *_conv_block(conv2(384, 256, 3, padding=1), 256, norm2),
            *_conv_block(conv2(256, 256, 3, padding=1), 256, norm2, pool2(3, stride=2)),
            *_conv_block(conv2(256, 512, (5, 4)), 512, norm2),
        )
        self.netfcaud = _embedding_head(width)
        self.netfclip = _embedding_head(width)
        self.netcnnlip = nn.Sequential(
            *_conv_block(conv3(3, 96, (5, 7, 7), stride=(1, 2, 2)), 96, norm3, pool3((1, 3, 3), stride=(1, 2, 2))),
            *_conv_block(
                conv3(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), 256, norm3,
                pool3((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            ),
            *_conv_block(conv3(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, norm3),
            *_conv_block(conv3(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, norm3),
            *_conv_block(conv3(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, norm3, pool3((1, 3, 3), stride=(1, 2, 2))),
            *_conv_block(conv3(256, 512, (1, 6, 6)), 512, norm3),
        )

    def forward_lip(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, 3, 5, 224, 224) BGR 0..255 -> (B, width)."""
        return self.netfclip(self.netcnnlip(windows).flatten(1))

    def forward_aud(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, 1, 13, 20) MFCC -> (B, width)."""
        return self.netfcaud(self.netcnnaud(windows).flatten(1))


@dataclass
class SyncScores:
    """One clip's SyncNet scores. ``dists`` (N, 31) is the distance of each window at each shift, column j
    meaning audio shifted by j - 15 frames; ``framewise_confidence`` is the reference's 9-tap median
    filtered per-window confidence at the chosen offset."""

    offset: int  # frames; positive: the audio leads the video
    min_dist: float  # LSE-D
    confidence: float  # LSE-C
    dists: np.ndarray
    framewise_confidence: np.ndarray

    @property
    def mean_dists(self) -> np.ndarray:
        """(31,) the offset-distance curve: mean distance over windows at each shift."""
        return self.dists.mean(axis=0)


def syncnet_mfcc(audio: np.ndarray) -> np.ndarray:
    """(13, M) float64 MFCC of 16 kHz int16 samples, as the reference computes it."""
    import python_speech_features

    return python_speech_features.mfcc(np.asarray(audio), SAMPLE_RATE).T


def as_int16(audio: np.ndarray) -> np.ndarray:
    """A waveform as the int16 samples the reference reads: float in [-1, 1] is scaled by 2^15, rounded and
    clipped (FFmpeg's float -> s16 conversion); int16 is kept as it is."""
    audio = np.asarray(audio)
    if audio.dtype == np.int16:
        return audio
    if not np.issubdtype(audio.dtype, np.floating):
        raise KeySyncError(f"audio of dtype {audio.dtype}: give int16 samples or floats in [-1, 1]")
    return np.clip(np.rint(audio.astype(np.float64) * 32768), -32768, 32767).astype(np.int16)


def window_count(num_frames: int, num_samples: int) -> int:
    """The reference's number of 5-frame windows: ``min(frames, samples // 640) - 5`` (the last frame that
    could start a window is never used)."""
    count = min(num_frames, num_samples // SAMPLES_PER_FRAME) - WINDOW
    if count < 1:
        raise KeySyncError(
            f"{num_frames} frames and {num_samples / SAMPLE_RATE:.2f} s of audio are too short for SyncNet; "
            f"give at least {WINDOW + 1} frames (0.24 s) of both"
        )
    return count


@torch.no_grad()
def embed_video(net: SyncNet, faces_bgr: np.ndarray, count: int, batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """(count, width) embeddings of the windows of frames v..v+4, v < ``count``, in batches of ``batch_size``."""
    video = torch.from_numpy(np.ascontiguousarray(faces_bgr)).permute(3, 0, 1, 2)  # (3, T, H, W) uint8
    batches = [range(first, min(count, first + batch_size)) for first in range(0, count, batch_size)]
    return torch.cat([net.forward_lip(torch.stack([video[:, v : v + WINDOW] for v in b]).float()) for b in batches])


@torch.no_grad()
def embed_audio(net: SyncNet, mfcc: np.ndarray, count: int, batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """(count, width) embeddings of the windows of MFCC frames 4v..4v+19, v < ``count``."""
    audio = torch.from_numpy(mfcc.astype(np.float32))[None]  # (1, 13, M)
    span = MFCC_PER_FRAME * WINDOW
    batches = [range(first, min(count, first + batch_size)) for first in range(0, count, batch_size)]
    return torch.cat([net.forward_aud(torch.stack([audio[..., MFCC_PER_FRAME * v : MFCC_PER_FRAME * v + span] for v in b])) for b in batches])


def offset_distances(video: torch.Tensor, audio: torch.Tensor, vshift: int = VSHIFT) -> torch.Tensor:
    """(N, 2 vshift + 1): distance of video window i to audio window i + j - vshift, the audio zero-padded."""
    padded = nn.functional.pad(audio, (0, 0, vshift, vshift))
    shifted = padded.unfold(0, 2 * vshift + 1, 1).transpose(1, 2)  # (N, shifts, width)
    return nn.functional.pairwise_distance(video[:, None, :].expand_as(shifted), shifted)


def scores_from_distances(dists: torch.Tensor, vshift: int = VSHIFT) -> SyncScores:
    """LSE-D, LSE-C, offset and the per-window confidence from the distances, as the reference takes them."""
    mean = dists.mean(dim=0)
    min_dist, best = torch.min(mean, 0)
    median = torch.median(mean)  # the lower middle value, as torch.median takes it
    framewise = (median - dists[:, best]).numpy()
    return SyncScores(
        offset=int(vshift - best),
        min_dist=float(min_dist),
        confidence=float(median - min_dist),
        dists=dists.numpy(),
        framewise_confidence=framewise_median(framewise),
    )


def framewise_median(values: np.ndarray) -> np.ndarray:
    """The reference's 9-tap median filter (zero-padded ends), quiet on clips of fewer than 9 windows."""
    import warnings

    from scipy.signal import medfilt

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "kernel_size exceeds volume extent")
        return medfilt(values, kernel_size=9)


def score_sync(net: SyncNet, faces: np.ndarray, audio: np.ndarray, batch_size: int = BATCH_SIZE) -> SyncScores:
    """SyncNet scores of 25 fps face crops ``faces`` (T, 224, 224, 3) uint8 **RGB** (flipped to the BGR the
    reference reads) and 16 kHz mono ``audio`` (int16, or floats in [-1, 1])."""
    faces = np.asarray(faces)
    if faces.ndim != 4 or faces.shape[1:] != (FACE_SIZE, FACE_SIZE, 3) or faces.dtype != np.uint8:
        raise KeySyncError(f"face crops of shape {faces.shape} {faces.dtype}: give (T, 224, 224, 3) uint8 RGB")
    samples = as_int16(audio)
    count = window_count(len(faces), len(samples))
    video = embed_video(net, faces[..., ::-1], count, batch_size)
    return scores_from_distances(offset_distances(video, embed_audio(net, syncnet_mfcc(samples), count, batch_size)))


def load_syncnet(path: str | Path) -> SyncNet:
    """A SyncNet in eval mode, float32, from a weight file (every key and shape checked)."""
    from .weights import read_state_dict

    tensors = read_state_dict(path, "syncnet")  # the reference's torch pickle (weights only) or safetensors
    net = SyncNet()
    try:
        net.load_state_dict(tensors)  # strict; copy_ casts each tensor to the parameter's float32
    except RuntimeError as err:  # torch lists every missing, unexpected and mis-shaped key over several lines
        problems = " ".join(str(err).split()).removeprefix("Error(s) in loading state_dict for SyncNet: ")
        raise KeySyncError(f"{path} does not hold SyncNet weights ({problems[:300]}); give {SYNCNET_FILE} or its safetensors copy") from None
    return net.eval()


def convert_syncnet(source: str | Path, output: str | Path) -> Path:
    """Write the tensors of ``source`` (checked against SyncNet's keys) as float32 safetensors at ``output``."""
    from ..files import save_tensors, write_atomic

    net = load_syncnet(source)
    tensors = {k: v.contiguous() for k, v in net.state_dict().items()}
    write_atomic(output, lambda tmp: save_tensors(tensors, tmp, metadata={"source": Path(source).name}))
    return Path(output)
