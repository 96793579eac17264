"""``keysync download``: fetch the released KeySync weights and the encoders it needs, then convert;
and ``resolve_model``: what a model name given to ``dub`` or ``from_pretrained`` means.

Everything comes from the Hugging Face hub through huggingface_hub (cached as usual); the converted
folder lives in the Hugging Face cache folder too, so it is converted once. Without network access this
fails at once and says what to fetch by hand and where to put it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import KeySyncError

log = logging.getLogger(__name__)

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


def released_model_dir() -> Path:
    """Where the converted released weights live: what ``dub`` uses when given no model."""
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "keysync" / "released"


def resolve_model(model: str | Path | None) -> Path:
    """A model folder from what a user gives: nothing or the released repository's id (the released
    weights, fetched and converted on first use), ``small`` (the synthetic-world demo model shipped in
    the package), a local folder, or another hub id holding a KeySync model folder."""
    from .model import INDEX, shipped_model_dir

    if model is None or str(model) == KEYSYNC_REPO:
        folder = released_model_dir()
        if (folder / INDEX).is_file():
            return folder
        if not _hub_reachable():
            raise KeySyncError(
                "no --model given: the default is the released KeySync weights, which are not here yet and the "
                f"Hugging Face hub cannot be reached (offline?); run `keysync download` once online, or by hand: "
                f"{manual_steps(folder)}; or pass --model small for the synthetic-world demo model"
            )
        return download(folder)
    if str(model) == "small":
        return shipped_model_dir()
    path = Path(model)
    if path.exists() or str(model).count("/") != 1 or str(model).startswith((".", "/", "~")):
        return path  # a folder (KeySyncModel.from_pretrained says what is wrong with it)
    if not _hub_reachable():
        raise KeySyncError(f"--model {model}: no such folder, and the Hugging Face hub cannot be reached to fetch it as a hub id")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(model)))
    except Exception as err:  # huggingface_hub raises many error types; all mean "could not fetch"
        raise KeySyncError(f"--model {model}: no such folder, and fetching it from the hub failed ({str(err).splitlines()[0]})") from err


def download(target: str | Path, trust_pickle: bool = False, overwrite: bool = False) -> Path:
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
    model = convert_checkpoints(*ckpts, vae_path=Path(vae) / "vae", trust_pickle=trust_pickle)
    model.save_pretrained(target, overwrite=overwrite)
    for name, repo in ENCODERS.items():
        snapshot_download(repo, local_dir=target / "audio" / name, allow_patterns=["*.json", "*.safetensors", "*.bin"])
    log.info(f"wrote {target}")
    return target
