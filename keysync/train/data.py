"""Training data: ``keysync prepare`` turns talking-face videos into shards; ``ClipSampler`` draws clips.

One shard per video (``NAME.safetensors``), at the model's 25 fps and crop size: crops as uint8 pixels,
landmarks in crop pixels, a present flag, both stages' audio features, occluder masks in crop pixels
and the mouth parameters when ``NAME.npz`` beside the video has them (synthetic clips), and, when the
model has a trained VAE, its latents (mode of the posterior). Masks are drawn from the landmarks when
clips are sampled, so one set of shards serves every mask kind. Shards are written atomically and an
existing shard is skipped, so an interrupted ``prepare`` resumes where it stopped; one cut by another
crop plan than the model's (``KeySyncModel.crop_plan``) or lacking its clip's mouth parameters is
rebuilt; a shard whose latents are missing or came from another VAE gets new latents from its stored
crops (no re-tracking), which is how latents are added after ``keysync train vae``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from ..audio import SAMPLES_PER_FRAME, build_features, frame_windows
from ..constants import CLIP
from ..errors import KeySyncError
from ..files import save_tensors, write_atomic
from ..models import KeySyncModel

KEYFRAME_STRIDE = 13
VAE_FRAMES = 4  # consecutive frames per VAE training clip: the temporal decoder sees motion


def _audio_for(video: Path) -> Path:
    wav = video.with_suffix(".wav")
    return wav if wav.is_file() else video


def _ground_truth_for(video: Path, keys=("occluder", "mouth")) -> dict[str, np.ndarray]:
    """What ``NAME.npz`` beside the video holds (``keysync synth`` writes it; real footage has none):
    per-frame occluder masks (frames, H, W), 1 = in front of the face, kept out of the mask as at
    inference; and the mouth parameters (frames, 5), which ``keysync.train.audio_mlp`` can learn to read
    from the speech."""
    path = video.with_suffix(".npz")
    if not path.is_file():
        return {}
    with np.load(path) as data:
        return {k: data[k] for k in keys if k in data.files}


def prepare_video(video: Path, model: KeySyncModel, features: dict, backend) -> dict[str, torch.Tensor]:
    """One video -> the tensors of its shard."""
    from ..faces.crops import cut_crop
    from ..faces.frontend import locate_face
    from ..media.audio import fit_audio_to_frames, load_audio
    from ..media.frames import plan_model_frames
    from ..media.seek import FrameFetcher
    from ..media.video import read_frames

    face = locate_face(read_frames(video), backend, model.crop_size, model.crop_plan, name=str(video))
    tracked, target, boxes, fill = face.tracked, face.target, face.boxes, face.fill
    plan = plan_model_frames(tracked.times)
    sources = plan.source_index
    fetcher = FrameFetcher(video, tracked.times)
    truth = _ground_truth_for(video)
    occluders = truth.get("occluder")
    crops, landmarks, covered = [], [], []
    for s in sources:
        box = boxes[s]
        crops.append(cut_crop(fetcher.fetch(int(s)), box))
        landmarks.append(box.to_crop(target.landmarks[fill[s]]))
        if occluders is not None:
            covered.append(cut_crop(occluders[s].astype(np.float32), box) > 0.5)
    pixels = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
    wave = fit_audio_to_frames(load_audio(_audio_for(video)), len(sources), plan.start).reshape(-1)
    out = {
        "pixels": pixels,
        "landmarks": torch.from_numpy(np.stack(landmarks)).float(),
        "present": torch.from_numpy(target.present[sources]).to(torch.uint8),
    }
    if occluders is not None:
        out["occluders"] = torch.from_numpy(np.stack(covered)).to(torch.uint8)
    if "mouth" in truth:
        out["mouth"] = torch.from_numpy(truth["mouth"][sources]).float()
    for stage, extractor in features.items():
        out[f"audio_{stage}"] = extractor(wave, frames=len(sources)).float()
    assert len(wave) == len(sources) * SAMPLES_PER_FRAME
    return out


def vae_fingerprint(vae) -> str:
    """A short hash of the VAE's weights: which VAE a shard's latents came from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(vae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def encode_latents(vae, pixels: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) uint8 crops -> (N, 4, h, w) float32 scaled latents (posterior mode)."""
    with torch.no_grad():
        return torch.cat([vae.encode_frames(p.float() / 127.5 - 1) for p in pixels.split(16)]).float()


def _write_shard(path: Path, tensors: dict, metadata: dict) -> None:
    write_atomic(path, lambda tmp: save_tensors({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata))


_WORKER: dict = {}


def _init_worker(model: KeySyncModel, backend_name: str, latents: bool, threads: int | None) -> None:
    """Per process: the model, its audio features, its VAE's fingerprint; the landmark back end on first use."""
    if threads:
        torch.set_num_threads(threads)
    _WORKER.clear()
    _WORKER.update(
        model=model, backend_name=backend_name, backend=None, latents=latents,
        features={s: build_features(spec) for s, spec in model.audio.items()},
        fingerprint=vae_fingerprint(model.vae) if latents else None,
    )


def _prepare_shard(job: tuple[Path, Path]) -> Path:
    """Write (or add latents to) one video's shard unless it is already complete."""
    from safetensors import safe_open

    from ..faces.backends import load_backend

    video, shard = job
    w = _WORKER
    if shard.exists():
        with safe_open(shard, "pt") as f:
            metadata = f.metadata() or {}
            # rebuilt: a shard cut by another crop plan than the model's (none named: cut before shards named
            # it, by "landmarks"), or written before shards kept the mouth parameters
            complete = metadata.get("crops", "landmarks") == w["model"].crop_plan and (
                "mouth" in f.keys() or "mouth" not in _ground_truth_for(video, ("mouth",))
            )
    if shard.exists() and complete:
        if not w["latents"] or metadata.get("vae") == w["fingerprint"]:
            return shard
        tensors = load_file(shard)
    else:
        w["backend"] = w["backend"] or load_backend(w["backend_name"])
        tensors = prepare_video(video, w["model"], w["features"], w["backend"])
        metadata = {"source": str(video), "crops": w["model"].crop_plan}
    if w["latents"]:
        tensors["latents"] = encode_latents(w["model"].vae, tensors["pixels"])
        metadata["vae"] = w["fingerprint"]
    _write_shard(shard, tensors, metadata)
    return shard


def prepare(
    src: str | Path, out: str | Path, model: KeySyncModel, backend_name: str = "mediapipe", progress: bool = True,
    latents: bool = True, jobs: int = 1,
) -> list[Path]:
    """Write a shard for every ``*.mp4`` under ``src`` that has none yet; returns the shard paths.

    ``latents=False`` (a model without a trained VAE yet) writes crops only; with ``latents=True``
    existing shards without latents from this VAE get them. ``jobs`` > 1 prepares that many videos at once,
    one process (and one thread) each; the shards hold the same crops and features (latents
    may differ in float rounding, being computed on one thread).
    """
    from ..parallel import run_jobs

    src, out = Path(src), Path(out)
    videos = sorted(src.rglob("*.mp4"))
    if not videos:
        raise KeySyncError(f"no .mp4 videos under {src}; give a folder of talking-face videos")
    out.mkdir(parents=True, exist_ok=True)
    info = out / "prepare.json"
    settings = {"crop_size": model.crop_size, "audio": model.audio}
    if info.is_file() and json.loads(info.read_text()) != settings:
        raise KeySyncError(f"{out} was prepared for another crop size or audio features; use a new folder")
    info.write_text(json.dumps(settings, indent=2))
    if latents:
        model.vae.check_encoder()
    work = [(v, out / (str(v.relative_to(src).with_suffix("")).replace(os.sep, "__") + ".safetensors")) for v in videos]
    setup = (model, backend_name, latents, 1 if jobs > 1 else None)
    try:
        run_jobs(_prepare_shard, work, jobs, desc="prepare", unit="video", progress=progress, initializer=_init_worker, initargs=setup)
    finally:
        _WORKER.clear()  # run here (jobs 1): do not keep the model alive
    return [shard for _, shard in work]


def lip_boxes(landmarks: np.ndarray, size: int, latent: int, margin: float = 0.3) -> np.ndarray:
    """(T, latent, latent) float32: 1 on the latent pixels that overlap the lips' box (points 48-67, widened
    by ``margin`` of its size on each side), for ``Recipe.lip_weight``."""
    scale = latent / size
    out = np.zeros((len(landmarks), latent, latent), np.float32)
    for t, lm in enumerate(landmarks):
        lo, hi = lm[48:68].min(axis=0), lm[48:68].max(axis=0)
        pad = margin * (hi - lo)
        (x0, y0), (x1, y1) = np.floor((lo - pad) * scale).astype(int), np.ceil((hi + pad) * scale).astype(int)
        out[t, max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = 1
    return out


class ClipSampler:
    """``sampler(step)`` -> a training batch of ``batch_size`` clips, the same for the same step.

    keyframe clips: 14 frames 13 apart (frames closer together for shards too short for that);
    interpolation clips: 14 consecutive frames; vae clips: ``VAE_FRAMES`` consecutive frames (pixels only).
    Only windows where the face is present throughout. ``mask``: the mask kind to train with (``box``, the
    paper's; ``mouth`` for its ablation), drawn from the stored landmarks at latent resolution.
    ``audio_window``: the network's (``KeySyncNet.audio_window``), frames of audio on each side of a frame.
    """

    def __init__(
        self, folder: str | Path, stage: str, batch_size: int = 1, seed: int = 0, mask: str = "box", vae: str | None = None,
        audio_window: int = 0,
    ):
        """``vae``: the fingerprint (``vae_fingerprint``) the shards' latents must come from."""
        from safetensors import safe_open

        from ..faces.masks import build_masks, latent_mask

        paths = sorted(Path(folder).glob("*.safetensors"))
        self.shards = [load_file(p) for p in paths]
        if not self.shards:
            raise KeySyncError(f"no shards in {folder}; make them with `keysync prepare`")
        if stage != "vae" and any("latents" not in s for s in self.shards):
            raise KeySyncError(
                f"shards in {folder} have no latents; train the VAE first, then run `keysync prepare` again "
                "with the trained model folder (it adds the latents)"
            )
        for path in paths if stage != "vae" and vae else []:
            with safe_open(path, "pt") as f:
                if (f.metadata() or {}).get("vae") != vae:
                    raise KeySyncError(
                        f"{path.name}'s latents come from another VAE than the model's; run `keysync prepare` "
                        "again with the model folder being trained (it re-encodes the stored crops)"
                    )
        if stage != "vae":
            for shard in self.shards:
                size, latent = shard["pixels"].shape[-1], shard["latents"].shape[-1]
                occluders = shard["occluders"].numpy() if "occluders" in shard else None
                masks = build_masks(mask, shard["landmarks"].numpy(), size, occluders)
                shard["masks"] = torch.from_numpy(latent_mask(masks, size // latent))[:, None]
                shard["lips"] = torch.from_numpy(lip_boxes(shard["landmarks"].numpy(), size, latent))[:, None]
                shard[f"audio_{stage}"] = frame_windows(shard[f"audio_{stage}"], audio_window)
        self.stage, self.batch_size, self.seed = stage, batch_size, seed
        self.length = VAE_FRAMES if stage == "vae" else CLIP
        self.windows = [(i, idx) for i, shard in enumerate(self.shards) for idx in self._windows(shard)]
        if not self.windows:
            raise KeySyncError(f"no usable {self.length}-frame clip in {folder} (clips too short or faces missing)")

    def _windows(self, shard) -> list[np.ndarray]:
        frames, length = len(shard["pixels"]), self.length
        if frames < length:
            return []
        stride = min(KEYFRAME_STRIDE, (frames - 1) // (length - 1)) if self.stage == "keyframe" else 1
        present = shard["present"].bool().numpy()
        starts = range(0, frames - stride * (length - 1))
        out = [s + stride * np.arange(length) for s in starts]
        return [w for w in out if present[w].all()]

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        picks = torch.randint(len(self.windows), (self.batch_size,), generator=g).tolist()
        clips = []
        for p in picks:
            shard_index, frames = self.windows[p]
            shard = self.shards[shard_index]
            idx = torch.from_numpy(frames)
            clip = {"pixels": shard["pixels"][idx].float() / 127.5 - 1}
            if self.stage == "vae":
                clip["pixels"] = clip["pixels"][None]
            else:
                latents = shard["latents"][idx]
                cond = latents[0] if self.stage == "keyframe" else torch.stack([latents[0], latents[-1]], dim=1)
                clip.update(latents=latents, masks=shard["masks"][idx], lips=shard["lips"][idx] * shard["masks"][idx], audio=shard[f"audio_{self.stage}"][idx][None], cond=cond[None])
            clips.append(clip)
        return {k: torch.cat([c[k] for c in clips]) for k in clips[0]}
