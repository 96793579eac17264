"""A KeySync model folder: keyframe network, interpolation network and VAE, loaded strictly.

Layout::

    MODEL_DIR/keysync.json                       format, preset name, notes
    MODEL_DIR/{keyframe,interpolation,vae}/config.json
    MODEL_DIR/{keyframe,interpolation,vae}/model.safetensors

Loading checks every tensor name and shape against the config, so a wrong or truncated folder fails
loudly instead of running with random weights.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import KeySyncError
from ..files import replace_folder, save_tensors, temp_folder
from .network import KeySyncNet, as_hw
from .presets import preset
from .vae import KeySyncVAE

WEIGHTS = "model.safetensors"
INDEX = "keysync.json"
COMPONENTS = ("keyframe", "interpolation", "vae")
# The small model trained on the synthetic world and shipped in the package (training/small-128/README.md).
SHIPPED_MODEL = Path(__file__).parent / "weights" / "small"


def shipped_model_dir() -> Path:
    if not (SHIPPED_MODEL / INDEX).is_file():
        raise KeySyncError(f"the shipped small model is missing from {SHIPPED_MODEL}; reinstall keysync or pass --model DIR")
    return SHIPPED_MODEL


def crop_plan(info: dict) -> str:
    """How a model's face crops are placed (``keysync.faces.crops.plan_crops``'s ``follow``): a model is
    dubbed with the crops it was trained on. ``keysync.json``'s ``crops``: presets and converted official
    weights say ``"head"``; a folder that names none was written before there was a choice, and its shards
    were cut by ``"landmarks"``."""
    return info.get("crops", "landmarks")


def trained_mask(info: dict) -> str:
    """The mask a model was trained with (``keysync.json``'s ``mask``; the paper's box if it names none)."""
    return info.get("mask", "box")


@dataclass(frozen=True)
class CropGeometry:
    """What a model cuts from each frame and regenerates: crop side in pixels, crop plan, mask."""

    size: int
    plan: str
    mask: str


def crop_geometry(directory: str | Path) -> CropGeometry:
    """A model folder's ``CropGeometry`` from its config files alone (no weights are read), so that
    ``keysync faces`` previews exactly what ``keysync dub`` with that folder cuts and pastes."""
    directory = Path(directory)
    try:
        info = json.loads((directory / INDEX).read_text())
        net = KeySyncNet.load_config(directory / "keyframe")
        vae = KeySyncVAE.load_config(directory / "vae")
    except (OSError, ValueError, json.JSONDecodeError) as err:
        raise KeySyncError(f"{directory} is not a readable KeySync model folder ({err}); give a folder made by `keysync convert`") from None
    factor = 2 ** (len(vae["block_out_channels"]) - 1)  # KeySyncVAE.downsample_factor, from its config
    h, w = as_hw(net["latent_size"])
    return CropGeometry(square_crop_side(h * factor, w * factor), crop_plan(info), trained_mask(info))


def square_crop_side(h: int, w: int) -> int:
    """The side of a model's face crops, which must be square to dub; a non-square model (from an official
    config with a non-square im_size) converts and runs on latents, but cannot dub yet."""
    if h != w:
        raise KeySyncError(f"this model works on {h}x{w} (height x width) face crops; non-square crops are not supported for dubbing yet")
    return h


# A VAE converted without the SVD encoder can decode but not encode; these keys may then be absent.
ENCODER_PREFIXES = ("encoder.", "quant_conv.")


@dataclass
class KeySyncModel:
    keyframe: KeySyncNet
    interpolation: KeySyncNet
    vae: KeySyncVAE
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.vae.has_encoder = self.has_vae_encoder

    @property
    def has_vae_encoder(self) -> bool:
        return self.info.get("vae_has_encoder", True)

    @property
    def audio(self) -> dict:
        """{stage: audio feature spec} (see ``keysync.audio.build_features``)."""
        return self.info.get("audio") or preset("official")["audio"]

    @property
    def crop_plan(self) -> str:
        return crop_plan(self.info)

    @property
    def mask(self) -> str:
        return trained_mask(self.info)

    @property
    def crop_hw(self) -> tuple[int, int]:
        """Face-crop (height, width) in pixels the model works at: latent size times the VAE's downsampling."""
        h, w = self.keyframe.latent_hw
        return h * self.vae.downsample_factor, w * self.vae.downsample_factor

    @property
    def crop_size(self) -> int:
        """The side of the square face crops it dubs."""
        return square_crop_side(*self.crop_hw)

    @classmethod
    def from_config(cls, net: dict, vae: dict, device: str | torch.device = "cpu", info: dict | None = None):
        """Randomly initialised components (``device="meta"`` allocates nothing)."""
        with torch.device(device):
            model = cls(
                keyframe=KeySyncNet(kind="keyframe", **net),
                interpolation=KeySyncNet(kind="interpolation", **net),
                vae=KeySyncVAE(**vae),
                info=dict(info or {}),
            )
        # diffusers builds the temporal mix factors with torch.Tensor(), which ignores the device context.
        return model.to(device)

    @classmethod
    def from_preset(cls, name: str, device: str | torch.device = "cpu", seed: int | None = 0):
        spec = preset(name)
        if seed is not None:
            torch.manual_seed(seed)
        return cls.from_config(spec["net"], spec["vae"], device=device, info={"preset": name, "audio": spec["audio"], "crops": "head"})

    def components(self):
        return {"keyframe": self.keyframe, "interpolation": self.interpolation, "vae": self.vae}

    def to(self, *args, **kwargs) -> "KeySyncModel":
        for module in self.components().values():
            # nn.Module.to: diffusers' override warns about fp32-only modules on every dtype change, and
            # these networks have none
            torch.nn.Module.to(module, *args, **kwargs)
        return self

    def eval(self) -> "KeySyncModel":
        for module in self.components().values():
            module.eval().requires_grad_(False)
        return self

    # --- folders ------------------------------------------------------------------------------------

    def save_pretrained(self, directory: str | Path, overwrite: bool = False, dtype: torch.dtype | None = None):
        """Write the folder atomically: into a temporary sibling, then renamed into place."""
        directory = Path(directory)
        if directory.exists() and not overwrite:
            raise KeySyncError(f"{directory} already exists; choose another output folder or pass --overwrite")
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_folder(directory)
        try:
            for name, module in self.components().items():
                sub = tmp / name
                sub.mkdir()
                module.save_config(sub)
                tensors = {k: _to_saved(v, dtype) for k, v in module.state_dict().items()}
                if name == "vae" and not self.has_vae_encoder:
                    tensors = {k: v for k, v in tensors.items() if not k.startswith(ENCODER_PREFIXES)}
                save_tensors(tensors, sub / WEIGHTS, metadata={"format": "pt", "component": name})
            (tmp / INDEX).write_text(json.dumps({"format": "keysync", "version": 1, **self.info}, indent=2) + "\n")
            replace_folder(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
        directory = Path(directory)
        if not directory.exists():
            raise KeySyncError(f"model folder {directory} does not exist; give a folder made by `keysync download` or `keysync convert`")
        if not (directory / INDEX).is_file():
            raise KeySyncError(
                f"{directory} is not a KeySync model folder (no {INDEX}); make one with `keysync convert`"
            )
        try:
            info = json.loads((directory / INDEX).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise KeySyncError(f"cannot read {directory / INDEX} ({err}); download or convert the model again") from None
        modules = {}
        for name in COMPONENTS:
            sub = directory / name
            try:
                config = (KeySyncVAE if name == "vae" else KeySyncNet).load_config(sub)
                with torch.device("meta"):
                    module = (KeySyncVAE if name == "vae" else KeySyncNet).from_config(config)
                tensors = load_weights(sub / WEIGHTS, device)
            except (OSError, ValueError, TypeError, json.JSONDecodeError) as err:
                raise KeySyncError(f"cannot read {sub}: {err}") from err
            optional = ENCODER_PREFIXES if name == "vae" and not info.get("vae_has_encoder", True) else ()
            check_state_dict(module, tensors, f"{sub / WEIGHTS}", optional=optional)
            if optional:  # placeholders: the VAE's encode_frames refuses to run without a real encoder
                tensors = {**placeholder_encoder(module, device), **tensors}
            if dtype is not None:
                tensors = {k: v.to(dtype) for k, v in tensors.items()}
            module.load_state_dict(tensors, strict=True, assign=True)
            modules[name] = module
        return cls(**modules, info=info).eval()


def load_weights(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """``load_file``, with a damaged file (an interrupted download or copy) named as one user error
    instead of a ``SafetensorError`` traceback."""
    if not path.is_file():
        raise KeySyncError(f"{path} is missing; the model folder is incomplete: download or convert it again")
    try:
        return load_file(path, device=str(device))
    except SafetensorError as err:
        raise KeySyncError(f"{path} is incomplete or corrupt ({err}); download or convert the model again") from None


def placeholder_encoder(vae: KeySyncVAE, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Zero tensors for the VAE encoder's weights, for a folder that only has the decoder."""
    return {
        k: torch.zeros(v.shape, dtype=v.dtype, device=device)
        for k, v in vae.state_dict().items()
        if k.startswith(ENCODER_PREFIXES)
    }


def _to_saved(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    tensor = tensor.detach().to("cpu")
    if dtype is not None and tensor.is_floating_point():
        tensor = tensor.to(dtype)
    return tensor.contiguous()


def _listing(keys, limit: int = 8) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_state_dict(module: torch.nn.Module, tensors: dict, source: str, optional: tuple[str, ...] = ()) -> None:
    """Raise a KeySyncError naming missing, unexpected and mis-shaped tensors."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = [k for k in expected if k not in tensors and not k.startswith(optional)]
    unexpected = [k for k in tensors if k not in expected]
    shapes = [
        f"{k} {tuple(tensors[k].shape)} != {expected[k]}"
        for k in expected
        if k in tensors and tuple(tensors[k].shape) != expected[k]
    ]
    raise_mismatch(f"{source} does not match the model config", missing, unexpected, shapes)


def raise_mismatch(what: str, missing=(), unexpected=(), shapes=()) -> None:
    """One error naming every missing, unexpected and mis-shaped tensor (nothing to say: no error)."""
    problems = [
        f"{label} {len(keys)}: {_listing(keys)}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes))
        if keys
    ]
    if problems:
        raise KeySyncError(f"{what} ({'; '.join(problems)})")
