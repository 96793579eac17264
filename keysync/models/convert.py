"""Convert released (or official-code-trained) KeySync checkpoints into a KeySync model folder.

Strict by design: every source tensor is used (or is one of the known-unused keys), every target tensor
is filled, and every shape is checked; anything else fails with the offending names.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..errors import KeySyncError
from .model import (
    ENCODER_PREFIXES,
    KeySyncModel,
    _listing,
    placeholder_encoder,
    raise_mismatch,
)
from .network import KeySyncNet, as_hw
from .official import (
    DECODER,
    LEARNED_MASK,
    UNUSED_PREFIXES,
    configs_from_official,
    decoder_official_names,
    is_conv1x1_as_linear,
    network_official_names,
    read_official_config,
)
from .presets import preset
from .vae import KeySyncVAE

log = logging.getLogger(__name__)

DEEPSPEED_PREFIX = "_forward_module."


def read_checkpoint(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A flat {key: tensor} from a .safetensors file, a Lightning .ckpt or a DeepSpeed model-state .pt.

    Pickles are opened with ``weights_only=True`` unless ``trust_pickle`` (never for untrusted files).
    """
    path = Path(path)
    if not path.is_file():
        raise KeySyncError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except Exception as err:  # safetensors raises its own error types
            raise KeySyncError(f"cannot read {path} as safetensors: {err}") from err
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle, mmap=True)
    except pickle.UnpicklingError as err:
        raise KeySyncError(
            f"{path} needs full unpickling, which can run arbitrary code; if you trust the file, pass --trust-pickle"
        ) from err
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise KeySyncError(f"cannot read checkpoint {path}: {err}") from err
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and isinstance(obj.get("module"), dict):
        obj = obj["module"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise KeySyncError(f"{path} holds no state dict (expected 'state_dict', 'module' or a flat tensor dict)")
    return {k.removeprefix(DEEPSPEED_PREFIX): v for k, v in obj.items()}


def _expected_shape(our_key: str, tensor_shape: tuple) -> tuple:
    return tensor_shape + (1, 1) if is_conv1x1_as_linear(our_key) else tensor_shape


def _take(names: dict[str, str], target: dict, source: dict, label: str) -> dict[str, torch.Tensor]:
    """Pick each target tensor from ``source`` by its official name; raise naming every mismatch."""
    missing = [theirs for theirs in names.values() if theirs not in source]
    shapes = []
    out = {}
    for ours, theirs in names.items():
        if theirs not in source:
            continue
        tensor = source[theirs]
        want = _expected_shape(ours, tuple(target[ours].shape))
        if tuple(tensor.shape) != want:
            shapes.append(f"{theirs} {tuple(tensor.shape)} != {want}")
            continue
        out[ours] = tensor.reshape(target[ours].shape) if is_conv1x1_as_linear(ours) else tensor
    raise_mismatch(f"{label} does not match the expected model", missing=missing, shapes=shapes)
    return out


def _check_learned_mask(net: KeySyncNet, source: dict, ckpt, configured: bool) -> None:
    """The learned mask fixes the crop size: a mismatch means the config is not the checkpoint's, and
    saying so beats a generic shape list."""
    if net.config.kind != "interpolation" or LEARNED_MASK not in source:
        return
    got, want = tuple(source[LEARNED_MASK].shape), tuple(net.learned_mask.shape)
    if got != want:
        config = "the --official-config given" if configured else "the released im_size [512, 512] (no --official-config)"
        raise KeySyncError(
            f"interpolation checkpoint {ckpt}: {LEARNED_MASK} is {got} but {config} makes {want} "
            f"(im_size / 8); pass the official config the checkpoint was trained with"
        )


def _read_vae(path: Path) -> dict[str, torch.Tensor]:
    """Diffusers-format SVD VAE weights: a folder (as on the hub, ``vae/``) or a .safetensors file."""
    if path.is_dir():
        files = sorted(path.glob("diffusion_pytorch_model*.safetensors")) or sorted(path.glob("*.safetensors"))
        if not files:
            raise KeySyncError(f"no .safetensors weights in VAE folder {path}")
        path = files[0]
    return read_checkpoint(path)


def _configs(official_configs: list[str | Path]) -> dict[str, tuple[dict, dict]]:
    """{kind: (net config, vae config)}; one config file describes both stages' sizes."""
    if not official_configs:
        spec = preset("official")
        return {kind: (spec["net"], spec["vae"]) for kind in ("keyframe", "interpolation")}
    found = {}
    for path in official_configs:
        params = read_official_config(path)
        try:
            kind, net, vae = configs_from_official(params)
        except KeySyncError as err:  # name the file
            raise KeySyncError(f"{path}: {err}") from None
        if kind in found:
            raise KeySyncError(f"two --official-config files describe the {kind} model; give one per stage")
        found[kind] = (net, vae)
    for kind, other in (("keyframe", "interpolation"), ("interpolation", "keyframe")):
        if kind not in found:
            found[kind] = found[other]
    net_k, net_i = dict(found["keyframe"][0]), dict(found["interpolation"][0])
    net_k.pop("kind", None)
    net_i.pop("kind", None)
    # Only the interpolation config records the crop size (its learned mask); the keyframe one follows it.
    net_k["latent_size"] = net_i["latent_size"]
    (h, w), levels = as_hw(net_k["latent_size"]), len(net_k["channel_mult"])
    if h % 2 ** (levels - 1) or w % 2 ** (levels - 1):  # the UNet halves them levels-1 times (as officially)
        raise KeySyncError(
            f"the keyframe UNet has {levels} levels, so its latents must be divisible by {2 ** (levels - 1)}, "
            f"but the interpolation config's im_size gives {h}x{w}"
        )
    return {"keyframe": (net_k, found["keyframe"][1]), "interpolation": (net_i, found["interpolation"][1])}


def convert_checkpoints(
    keyframe_ckpt: str | Path,
    interpolation_ckpt: str | Path,
    official_configs: list[str | Path] | None = None,
    vae_path: str | Path | None = None,
    trust_pickle: bool = False,
) -> KeySyncModel:
    """Build a ``KeySyncModel`` from official checkpoints (see module docstring for the rules)."""
    configs = _configs(list(official_configs or []))
    nets, decoders = {}, {}
    for kind, ckpt in (("keyframe", keyframe_ckpt), ("interpolation", interpolation_ckpt)):
        net_cfg, vae_cfg = configs[kind]
        source = read_checkpoint(ckpt, trust_pickle=trust_pickle)
        with torch.device("meta"):
            net = KeySyncNet(kind=kind, **net_cfg)
            vae = KeySyncVAE(**vae_cfg)
        names = network_official_names(net)
        _check_learned_mask(net, source, ckpt, bool(official_configs))
        tensors = _take(names, net.state_dict(), source, f"{kind} checkpoint {ckpt}")
        net.load_state_dict(tensors, strict=True, assign=True)
        nets[kind] = net
        dec_names = decoder_official_names(vae)
        if any(k.startswith(DECODER) for k in source):
            decoders[kind] = (vae, _take(dec_names, vae.state_dict(), source, f"VAE decoder in {ckpt}"))
        known = set(names.values()) | set(dec_names.values())
        ignored = [k for k in source if k.startswith(UNUSED_PREFIXES)]
        unexpected = [k for k in source if k not in known and not k.startswith(UNUSED_PREFIXES)]
        if unexpected:
            raise KeySyncError(
                f"{kind} checkpoint {ckpt} has {len(unexpected)} unexpected tensors: {_listing(unexpected)}"
            )
        if ignored:
            log.info(f"{kind}: skipped {len(ignored)} tensors of the unused conditioner autoencoder")
        log.info(f"{kind}: {len(names)} tensors converted from {ckpt}")

    vae_tensors = {}
    if vae_path is not None:
        vae_tensors = _read_vae(Path(vae_path))
    if "interpolation" in decoders:
        # The interpolation stage's decoder makes every output frame in the official pipeline.
        vae, decoder = decoders["interpolation"]
        if "keyframe" in decoders and any(
            not torch.equal(decoders["keyframe"][1][k], v) for k, v in decoder.items()
        ):
            log.warning("the two checkpoints carry different VAE decoders; using the interpolation one")
    elif "keyframe" in decoders:
        vae, decoder = decoders["keyframe"]
    elif vae_tensors:
        with torch.device("meta"):
            vae = KeySyncVAE(**configs["interpolation"][1])
        decoder = {k: v for k, v in vae_tensors.items() if k.startswith("decoder.")}
    else:
        raise KeySyncError("neither checkpoint holds VAE decoder weights; pass the SVD VAE with --vae DIR")

    target = vae.state_dict()
    if vae_tensors:
        wanted = {k: tuple(v.shape) for k, v in target.items() if k.startswith(ENCODER_PREFIXES)}
        missing = [k for k in wanted if k not in vae_tensors]
        shapes = [f"{k} {tuple(vae_tensors[k].shape)} != {s}" for k, s in wanted.items() if k in vae_tensors and tuple(vae_tensors[k].shape) != s]
        raise_mismatch(f"--vae {vae_path} is not the matching SVD VAE", missing=missing, shapes=shapes)
        encoder = {k: vae_tensors[k] for k in wanted}
    else:
        log.warning("no --vae given, so the model folder can decode but not encode; pass the SVD VAE to add its encoder")
        encoder = placeholder_encoder(vae)
    vae.load_state_dict({**decoder, **encoder}, strict=True, assign=True)
    info = {"source": "official", "vae_has_encoder": bool(vae_tensors), "audio": preset("official")["audio"], "crops": "head"}
    return KeySyncModel(nets["keyframe"], nets["interpolation"], vae, info=info).eval()
