"""Training data: ``keysync prepare`` turns talking-face videos into shards; ``ClipSampler`` draws clips.

One shard per video (``NAME.safetensors``), at the model's 25 fps and crop size: VAE latents (mode of
the posterior), box masks at latent resolution, crops as uint8 pixels (for the pixel loss), landmarks
in crop pixels, a present flag, and both stages' audio features. Shards are written atomically and an
existing shard is skipped, so an interrupted ``prepare`` resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..audio import SAMPLES_PER_FRAME, build_features
from ..errors import KeySyncError
from ..models import KeySyncModel

CLIP = 14
KEYFRAME_STRIDE = 13


def _audio_for(video: Path) -> Path:
    wav = video.with_suffix(".wav")
    return wav if wav.is_file() else video


def prepare_video(video: Path, model: KeySyncModel, features: dict, backend) -> dict[str, torch.Tensor]:
    """One video -> the tensors of its shard."""
    from ..faces.crops import cut_crop, plan_crops
    from ..faces.masks import build_mask, latent_mask
    from ..faces.tracking import select_target, track_faces
    from ..media.audio import fit_audio_to_frames, load_audio
    from ..media.frames import plan_model_frames
    from ..media.seek import FrameFetcher
    from ..media.video import read_frames
    from ..pipeline.dub import nearest_present

    tracked = track_faces(read_frames(video), backend)
    target = select_target(tracked)
    if not target.present.any():
        raise KeySyncError(f"no face found in {video}")
    size, factor = model.crop_size, model.vae.downsample_factor
    boxes = plan_crops(target, tracked.times, size=size)
    fill = nearest_present(target.present)
    plan = plan_model_frames(tracked.times)
    sources = plan.source_index
    fetcher = FrameFetcher(video, tracked.times)
    crops, masks, landmarks = [], [], []
    for s in sources:
        box = boxes[fill[s]]
        crops.append(cut_crop(fetcher.fetch(int(s)), box))
        lm = box.to_crop(target.landmarks[fill[s]])
        landmarks.append(lm)
        masks.append(latent_mask(build_mask("box", lm, size), factor))
    pixels = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        latents = torch.cat([model.vae.encode_frames(p.float() / 127.5 - 1) for p in pixels.split(16)])
    wave = fit_audio_to_frames(load_audio(_audio_for(video)), len(sources), plan.start).reshape(-1)
    out = {
        "latents": latents.float(),
        "masks": torch.from_numpy(np.stack(masks))[:, None].to(torch.uint8),
        "pixels": pixels,
        "landmarks": torch.from_numpy(np.stack(landmarks)).float(),
        "present": torch.from_numpy(target.present[sources]).to(torch.uint8),
    }
    for stage, extractor in features.items():
        out[f"audio_{stage}"] = extractor(wave, frames=len(sources)).float()
    assert len(wave) == len(sources) * SAMPLES_PER_FRAME
    return out


def prepare(src: str | Path, out: str | Path, model: KeySyncModel, backend_name: str = "mediapipe", progress: bool = True) -> list[Path]:
    """Write a shard for every ``*.mp4`` under ``src`` that has none yet; returns the shard paths."""
    from ..faces.backends import load_backend

    src, out = Path(src), Path(out)
    videos = sorted(src.rglob("*.mp4"))
    if not videos:
        raise KeySyncError(f"no .mp4 videos under {src}; give a folder of talking-face videos")
    out.mkdir(parents=True, exist_ok=True)
    (out / "prepare.json").write_text(json.dumps({"crop_size": model.crop_size, "audio": model.audio}, indent=2))
    features = {s: build_features(spec) for s, spec in model.audio.items()}
    backend = load_backend(backend_name)
    shards = []
    for video in tqdm(videos, desc="prepare", unit="video", disable=not progress):
        shard = out / (str(video.relative_to(src).with_suffix("")).replace(os.sep, "__") + ".safetensors")
        shards.append(shard)
        if shard.exists():
            continue
        tensors = prepare_video(video, model, features, backend)
        fd, tmp = tempfile.mkstemp(prefix=f".{shard.stem}.", suffix=".partial", dir=out)
        os.close(fd)
        try:
            save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata={"source": str(video)})
            os.replace(tmp, shard)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return shards


class ClipSampler:
    """``sampler(step)`` -> a training batch of ``batch_size`` clips, the same for the same step.

    keyframe clips: 14 frames 13 apart (frames closer together for shards too short for that);
    interpolation clips: 14 consecutive frames. Only windows where the face is present throughout.
    """

    def __init__(self, folder: str | Path, stage: str, batch_size: int = 1, seed: int = 0):
        self.shards = [load_file(p) for p in sorted(Path(folder).glob("*.safetensors"))]
        if not self.shards:
            raise KeySyncError(f"no shards in {folder}; make them with `keysync prepare`")
        self.stage, self.batch_size, self.seed = stage, batch_size, seed
        self.windows = [(i, idx) for i, shard in enumerate(self.shards) for idx in self._windows(shard)]
        if not self.windows:
            raise KeySyncError(f"no usable {CLIP}-frame clip in {folder} (clips too short or faces missing)")

    def _windows(self, shard) -> list[np.ndarray]:
        frames = len(shard["latents"])
        if frames < CLIP:
            return []
        stride = min(KEYFRAME_STRIDE, (frames - 1) // (CLIP - 1)) if self.stage == "keyframe" else 1
        present = shard["present"].bool().numpy()
        starts = range(0, frames - stride * (CLIP - 1))
        out = [s + stride * np.arange(CLIP) for s in starts]
        return [w for w in out if present[w].all()]

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        picks = torch.randint(len(self.windows), (self.batch_size,), generator=g).tolist()
        clips = []
        for p in picks:
            shard_index, frames = self.windows[p]
            shard = self.shards[shard_index]
            idx = torch.from_numpy(frames)
            latents = shard["latents"][idx]
            cond = latents[0] if self.stage == "keyframe" else torch.stack([latents[0], latents[-1]], dim=1)
            clips.append(
                dict(
                    latents=latents,
                    masks=shard["masks"][idx].float(),
                    audio=shard[f"audio_{self.stage}"][idx][None],
                    cond=cond[None],
                    pixels=shard["pixels"][idx].float() / 127.5 - 1,
                )
            )
        return {k: torch.cat([c[k] for c in clips]) for k in clips[0]}
