"""``keysync download``: fetch the released KeySync weights and the encoders it needs, then convert.

Everything comes from the Hugging Face hub through huggingface_hub (cached as usual). Without network
access this fails at once and says what to fetch by hand and where to put it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import KeySyncError

KEYSYNC_REPO = "toninio19/keysync"
CHECKPOINTS = ("checkpoints/keyframe_dub.pt", "checkpoints/interpolation_dub.pt")
SVD_REPO = "stabilityai/stable-video-diffusion-img2vid"
ENCODERS = {"hubert": "facebook/hubert-base-ls960", "wavlm": "microsoft/wavlm-base-plus"}


def manual_steps(target: Path) -> str:
    return (
        f"fetch {KEYSYNC_REPO} ({', '.join(CHECKPOINTS)}), the vae/ folder of {SVD_REPO}, "
        f"{ENCODERS['hubert']} into {target / 'audio' / 'hubert'} and {ENCODERS['wavlm']} into "
        f"{target / 'audio' / 'wavlm'}, then run: keysync convert keyframe_dub.pt interpolation_dub.pt -o {target} --vae vae"
    )


def _hub_reachable() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=5).close()
        return True
    except OSError:
        return False


def download(target: str | Path, trust_pickle: bool = False, overwrite: bool = False, log=print) -> Path:
    from huggingface_hub import hf_hub_download, snapshot_download

    from .convert import convert_checkpoints

    target = Path(target)
    if target.exists() and not overwrite:
        raise KeySyncError(f"{target} already exists; choose another folder or pass --overwrite")
    if not _hub_reachable():
        raise KeySyncError(f"cannot reach the Hugging Face hub (offline?); {manual_steps(target)}")
    try:
        ckpts = [hf_hub_download(KEYSYNC_REPO, name) for name in CHECKPOINTS]
        vae = snapshot_download(SVD_REPO, allow_patterns=["vae/config.json", "vae/diffusion_pytorch_model.fp16.safetensors"])
    except Exception as err:  # huggingface_hub raises many error types; all mean "could not fetch"
        raise KeySyncError(f"download failed ({str(err).splitlines()[0]}); {manual_steps(target)}") from err
    model = convert_checkpoints(*ckpts, vae_path=Path(vae) / "vae", trust_pickle=trust_pickle, log=log)
    model.save_pretrained(target, overwrite=overwrite)
    for name, repo in ENCODERS.items():
        snapshot_download(repo, local_dir=target / "audio" / name, allow_patterns=["*.json", "*.safetensors", "*.bin"])
    log(f"wrote {target}")
    return target
