"""The metric networks' weights: each is loaded from a path the user gives (a command-line flag, or a YAML
file naming them), never fetched. Where each file is published, the one-line error when it is missing,
reading torch pickles without running code (``weights_only=True``) or safetensors, and which metrics run.

A weights file for ``--weights-config`` names the files by these keys (paths relative to the YAML file's
folder; a flag on the command line wins over the file)::

    syncnet: syncnet_v2.model
    inception: pt_inception-2015-12-05-6726825d.pth
    i3d: i3d_torchscript.pt
    arcface: buffalo_l/w600k_r50.onnx
    lpips_alexnet: alexnet-owt-7be5be79.pth
    lpips_linear: alex.pth
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import KeySyncError
from .syncnet import SYNCNET_FILE, SYNCNET_URL


@dataclass(frozen=True)
class WeightFile:
    """One published weight file: the key naming it (config file, ``score_frames``), its flag, file name,
    where it is published, and what it is."""

    key: str
    flag: str
    file: str
    url: str
    what: str
    note: str = ""  # where inside the download the file is, or another place to get it


WEIGHTS = {w.key: w for w in (
    WeightFile("syncnet", "--syncnet", SYNCNET_FILE, SYNCNET_URL, "SyncNet"),
    WeightFile("inception", "--inception", "pt_inception-2015-12-05-6726825d.pth",
               "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
               "FID's Inception"),
    WeightFile("i3d", "--i3d", "i3d_torchscript.pt", "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt",
               "FVD's I3D"),
    WeightFile("arcface", "--arcface", "w600k_r50.onnx",
               "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip", "CSIM's ArcFace",
               "inside buffalo_l.zip"),
    WeightFile("lpips_alexnet", "--lpips-alexnet", "alexnet-owt-7be5be79.pth",
               "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", "LPIPS's AlexNet"),
    WeightFile("lpips_linear", "--lpips-linear", "alex.pth",
               "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
               "LPIPS's v0.1 linear layers", "also inside the lpips wheel on PyPI as lpips/weights/v0.1/alex.pth"),
)}

# --metrics names: the weight files each needs, and how a skip note names it
METRIC_WEIGHTS = {
    "lse": ("syncnet",), "psnr": (), "ssim": (), "lipleak": (), "jitter": (),
    "fid": ("inception",), "fvd": ("i3d",), "csim": ("arcface",), "lpips": ("lpips_alexnet", "lpips_linear"),
}
METRIC_LABELS = {"lse": "LSE-C / LSE-D", "fid": "FID", "fvd": "FVD", "csim": "CSIM", "lpips": "LPIPS"}


def where(key: str) -> str:
    """'FILE (published at URL[, note])' for weight file ``key``."""
    w = WEIGHTS[key]
    return f"{w.file} (published at {w.url}{', ' + w.note if w.note else ''})"


def require_file(path: str | Path, key: str) -> Path:
    """``path`` if it is a file, else the one-line error naming the file to get and where it is published."""
    path, w = Path(path), WEIGHTS[key]
    if not path.is_file():
        raise KeySyncError(f"{w.what} weights not found: {path}; get {where(key)} and give its path with {w.flag}")
    return path


def read_state_dict(path: str | Path, key: str) -> dict:
    """The tensors of a weight file: safetensors, or a torch pickle of a state dict opened with
    ``weights_only=True`` (on the CPU, wherever it was saved), so that a pickle that would run code is refused."""
    import pickle

    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path, w = require_file(path, key), WEIGHTS[key]
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except SafetensorError as err:
            raise KeySyncError(f"{path} is incomplete or corrupt ({err}); copy or convert it again") from None
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise KeySyncError(f"{path} is a pickle that would run code when loaded, which keysync refuses; "
                           f"give {w.file} (a plain state dict) or a safetensors copy") from None
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise KeySyncError(f"cannot read {path} as {w.what} weights ({' '.join(str(err).split())[:200]}); "
                           f"give {w.file} or a .safetensors copy") from None
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise KeySyncError(f"{path} holds no state dict; give {w.file} or a .safetensors copy")
    return dict(tensors)


def load_checked(module, tensors: dict, path, key: str, optional=("num_batches_tracked",)):
    """``module.load_state_dict(tensors)`` with every key and shape checked (keys ending in ``optional`` may
    be absent: BatchNorm's counters, which files saved by older torch lack); one line when they differ."""
    w = WEIGHTS[key]
    wanted = module.state_dict()
    missing = [k for k in wanted if k not in tensors and not k.endswith(optional)]
    unexpected = [k for k in tensors if k not in wanted]
    shapes = [f"{k} {tuple(tensors[k].shape)} (wants {tuple(wanted[k].shape)})"
              for k in wanted if k in tensors and tensors[k].shape != wanted[k].shape]
    if missing or unexpected or shapes:
        problems = "; ".join(f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                             for what, keys in (("missing", missing), ("unexpected", unexpected), ("shapes", shapes)) if keys)
        raise KeySyncError(f"{path} does not hold {w.what} weights ({problems}); give {w.file}")
    module.load_state_dict(tensors, strict=False)
    return module.eval()


def read_config(path: str | Path) -> dict[str, Path]:
    """{key: path} from a ``--weights-config`` YAML file (paths relative to its folder)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise KeySyncError(f"--weights-config {path} does not exist; give a YAML file naming the weight files")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise KeySyncError(f"{path} is not valid YAML ({' '.join(str(err).split())[:200]})") from None
    if not isinstance(data, dict):
        raise KeySyncError(f"{path} holds no mapping; write one 'key: path' line per weight file ({', '.join(WEIGHTS)})")
    unknown = sorted(set(map(str, data)) - set(WEIGHTS))
    if unknown:
        raise KeySyncError(f"{path} names unknown weights {', '.join(unknown)}; the keys are {', '.join(WEIGHTS)}")
    named = {k: Path(str(v)).expanduser() for k, v in data.items() if v is not None}
    return {k: p if p.is_absolute() else path.parent / p for k, p in named.items()}


def resolve_weights(given: dict[str, str | Path | None], config: str | Path | None = None) -> dict[str, Path]:
    """{key: path} of the weight files given (flags over the config file), each checked to exist: a missing
    one is the one-line error naming the file and where it is published, before any work."""
    paths = read_config(config) if config else {}
    paths.update({k: Path(v) for k, v in given.items() if v is not None})
    for key, path in paths.items():
        require_file(path, key)
    return paths


def select_metrics(requested: str | None, weights: dict[str, Path]) -> tuple[set[str], list[str]]:
    """The ``--metrics`` to run and the notes for those skipped. ``requested``: comma-separated names (None:
    every metric whose weights are given); asking for one without its weights is an error."""
    if requested is None:
        chosen = {m for m, keys in METRIC_WEIGHTS.items() if all(k in weights for k in keys)}
        notes = []
        for metric, keys in METRIC_WEIGHTS.items():
            lacking = [k for k in keys if k not in weights]
            if lacking:
                how = ", ".join(f"get {WEIGHTS[k].file} ({WEIGHTS[k].url}) and pass {WEIGHTS[k].flag}" for k in lacking)
                notes.append(f"{METRIC_LABELS[metric]} skipped: no {' or '.join(WEIGHTS[k].what for k in lacking)} weights; {how}")
        return chosen, notes
    chosen = {m.strip().lower() for m in requested.split(",") if m.strip()}
    unknown = sorted(chosen - set(METRIC_WEIGHTS))
    if unknown or not chosen:
        raise KeySyncError(f"--metrics {requested!r}: give some of {','.join(METRIC_WEIGHTS)}, separated by commas")
    for metric in sorted(chosen):
        for k in METRIC_WEIGHTS[metric]:
            if k not in weights:
                raise KeySyncError(f"--metrics {metric} needs {WEIGHTS[k].what} weights: get {where(k)} and pass {WEIGHTS[k].flag} "
                                   "(or name it in --weights-config)")
    return chosen, []
