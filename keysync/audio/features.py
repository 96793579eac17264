"""Audio features: exactly two rows per 25 fps video frame, for any length of audio.

Both speech encoders (HuBERT, WavLM) and the weight-free log-mel front end use a 400-sample window and a
320-sample hop at 16 kHz, so padding the waveform to ``640 F + 80`` samples gives exactly ``2 F`` rows,
row ``2f + k`` centred 200 + 320 k samples into video frame ``f``. Long audio is processed in windows
that start on video-frame boundaries, with context on both sides that is computed and thrown away, so
window joins neither drift nor lose rows (the official code drifted ~20 ms per 20 s piece). Models whose
first conv layer is group-normalised over time (HuBERT-base, WavLM-Base+) see slightly different
statistics per window, so their rows at a join are close to, not bit-identical with, one pass over the file.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from ..constants import MODEL_FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from ..errors import KeySyncError

ROWS_PER_FRAME = 2
HOP = SAMPLES_PER_FRAME // ROWS_PER_FRAME  # 320
WINDOW = 400
TAIL = WINDOW - HOP  # 80: the extra samples the last row's window needs


def num_frames(num_samples: int) -> int:
    """Video frames (25 fps) covered by ``num_samples`` of 16 kHz audio, a partial last frame included."""
    return max(1, math.ceil(num_samples / SAMPLES_PER_FRAME))


def frame_padded(wave: np.ndarray | torch.Tensor, frames: int | None = None) -> torch.Tensor:
    """Zero-pad (or cut) a mono waveform to ``640 F + 80`` samples, as float32."""
    wave = torch.as_tensor(np.asarray(wave, dtype=np.float32)).flatten()
    frames = num_frames(len(wave)) if frames is None else frames
    target = frames * SAMPLES_PER_FRAME + TAIL
    return torch.nn.functional.pad(wave[:target], (0, max(0, target - len(wave))))


class LogMelFeatures:
    """Weight-free features for small models: log-mel energies, (F, 2, n_mels)."""

    name = "logmel"

    def __init__(self, n_mels: int = 80, n_fft: int = 512):
        from transformers.audio_utils import mel_filter_bank

        self.dim = n_mels
        self.n_fft = n_fft
        bank = mel_filter_bank(
            num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=20.0,
            max_frequency=SAMPLE_RATE / 2, sampling_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney",
        )
        self.mel = torch.from_numpy(bank.astype(np.float32))  # (freq, mels)
        self.window = torch.hann_window(WINDOW)

    def __call__(self, wave: np.ndarray | torch.Tensor, frames: int | None = None) -> torch.Tensor:
        x = frame_padded(wave, frames)
        windows = x.unfold(0, WINDOW, HOP) * self.window  # (2F, 400): one row per window
        power = torch.fft.rfft(windows, n=self.n_fft).abs() ** 2
        logmel = torch.log(power @ self.mel + 1e-6)
        # A fixed affine map to roughly unit scale; per-file statistics would break windowing invariance.
        logmel = (logmel + 5.0) / 5.0
        return logmel.reshape(-1, ROWS_PER_FRAME, self.dim)


class SpeechEncoderFeatures:
    """Last hidden state of a transformers speech encoder (HuBERT, WavLM), (F, 2, hidden).

    ``normalize`` standardises the whole waveform first (the official HuBERT input); WavLM-Base+ takes
    the raw waveform. Windows of ``window_s`` seconds with ``context_s`` seconds of context each side.
    """

    def __init__(self, model, normalize: bool, window_s: float = 20.0, context_s: float = 2.0, name: str = ""):
        self.model = model.eval()
        self.normalize = normalize
        self.window_frames = max(1, round(window_s * MODEL_FPS))
        self.context_frames = max(0, round(context_s * MODEL_FPS))
        self.dim = model.config.hidden_size
        self.name = name or model.config.model_type

    @classmethod
    def from_pretrained(cls, source: str, normalize: bool, device: str | torch.device = "cpu", **kwargs):
        """``source``: a local folder or a hub id (a hub id needs a download unless it is cached)."""
        from transformers import AutoModel

        try:
            model = AutoModel.from_pretrained(source)
        except (OSError, ValueError) as err:
            hint = "" if os.path.isdir(source) else " (no network? download it once, or pass a local folder)"
            raise KeySyncError(f"cannot load audio encoder {source!r}{hint}: {str(err).splitlines()[0]}") from err
        return cls(model.to(device), normalize=normalize, **kwargs)

    @classmethod
    def random(cls, kind: str, normalize: bool, device: str | torch.device = "cpu", seed: int = 0, **kwargs):
        """The encoder's base-size architecture (HuBERT-base, WavLM-Base+) with random weights, built with no
        download, for a preset dubbed with ``--random-weights``: its timings hold, its features are noise."""
        from transformers import HubertConfig, HubertModel, WavLMConfig, WavLMModel

        config, model_class = {"hubert": (HubertConfig, HubertModel), "wavlm": (WavLMConfig, WavLMModel)}[kind]
        with torch.random.fork_rng(devices=[]):  # the caller's random stream is left as it was
            torch.manual_seed(seed)
            model = model_class(config())
        return cls(model.to(device), normalize=normalize, name=kind, **kwargs)

    @torch.no_grad()
    def __call__(self, wave: np.ndarray | torch.Tensor, frames: int | None = None) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(wave, dtype=np.float32)).flatten()
        if self.normalize:
            x = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)
        x = frame_padded(x, frames)
        total = (len(x) - TAIL) // SAMPLES_PER_FRAME
        device = next(self.model.parameters()).device
        rows = []
        for start in range(0, total, self.window_frames):
            stop = min(total, start + self.window_frames)
            lo, hi = max(0, start - self.context_frames), min(total, stop + self.context_frames)
            piece = x[lo * SAMPLES_PER_FRAME : hi * SAMPLES_PER_FRAME + TAIL]
            hidden = self.model(piece[None].to(device)).last_hidden_state[0].float().cpu()
            expected = (hi - lo) * ROWS_PER_FRAME
            if hidden.shape[0] != expected:
                raise RuntimeError(f"{self.name}: expected {expected} feature rows, got {hidden.shape[0]}")
            rows.append(hidden[(start - lo) * ROWS_PER_FRAME : (stop - lo) * ROWS_PER_FRAME])
        return torch.cat(rows).reshape(total, ROWS_PER_FRAME, self.dim)


def build_features(spec: dict, device: str | torch.device = "cpu", encoder_dir: str | None = None, random_weights: bool = False):
    """A feature extractor from a model folder's audio spec.

    ``{"encoder": "logmel", "n_mels": N}`` or ``{"encoder": "hubert"|"wavlm", "source": ID, "normalize": B}``;
    ``encoder_dir`` (a folder holding ``hubert/`` or ``wavlm/``) overrides ``source`` for offline use;
    ``random_weights`` builds a speech encoder's architecture without its weights (``SpeechEncoderFeatures.random``).
    """
    kind = spec.get("encoder")
    if kind == "logmel":
        return LogMelFeatures(n_mels=int(spec.get("n_mels", 80)))
    if kind in ("hubert", "wavlm") and random_weights:
        return SpeechEncoderFeatures.random(kind, normalize=bool(spec.get("normalize")), device=device)
    if kind in ("hubert", "wavlm"):
        source = spec["source"]
        if encoder_dir is not None and os.path.isdir(os.path.join(encoder_dir, kind)):
            source = os.path.join(encoder_dir, kind)
        return SpeechEncoderFeatures.from_pretrained(source, normalize=bool(spec.get("normalize")), device=device, name=kind)
    raise KeySyncError(f"unknown audio encoder {kind!r} in the model folder; expected logmel, hubert or wavlm")


def frame_windows(features: torch.Tensor, each_side: int) -> torch.Tensor:
    """(N, 2, F) per-frame features -> (N, 2 (2k+1), F): each frame's rows, then its k neighbours' on each
    side in time order (edges repeat the first/last frame), for networks with ``audio_window`` k > 0.

    Lips move ahead of and behind the sound they make; one 40 ms frame of audio cannot tell them. Windows
    are cut from the whole stream, before keyframes pick frames far apart.
    """
    if each_side == 0:
        return features
    n = features.shape[0]
    offsets = torch.arange(-each_side, each_side + 1, device=features.device)
    index = (torch.arange(n, device=features.device)[:, None] + offsets).clamp(0, n - 1)
    return features[index].flatten(1, 2)
