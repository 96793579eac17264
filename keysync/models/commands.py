"""``keysync convert`` and ``keysync download``: official checkpoints -> a KeySync model folder."""

from __future__ import annotations

import argparse

from ..constants import DTYPES
from ..pipeline.commands import GUIDANCE_HELP, parse_guidance


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert released KeySync checkpoints into a model folder",
        description=(
            "Read the keyframe and interpolation checkpoints (DeepSpeed model-state .pt, Lightning .ckpt or "
            ".safetensors) and write a model folder of safetensors + config.json. Strict: every tensor "
            "name and shape is checked."
        ),
    )
    p.add_argument("keyframe_ckpt", help="keyframe checkpoint, e.g. keyframe_dub.pt")
    p.add_argument("interpolation_ckpt", help="interpolation checkpoint, e.g. interpolation_dub.pt")
    p.add_argument("-o", "--output", required=True, help="model folder to write")
    p.add_argument(
        "--official-config",
        action="append",
        default=[],
        metavar="FILE",
        help="official model config (yaml, or JSON with 'official_config') for checkpoints of another size; "
        "give it once (both stages share its sizes) or once per stage. Default: the released sizes",
    )
    p.add_argument("--vae", metavar="PATH", help="SVD VAE (diffusers folder or .safetensors) to add the VAE encoder")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="stored precision")
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow full unpickling of .pt/.ckpt files (runs code from the file: only for files you trust)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=run_convert)

    e = subparsers.add_parser(
        "export",
        help="copy a model folder at another precision (how the shipped small model is made from a training run)",
    )
    e.add_argument("model", help="model folder, e.g. runs/small/model")
    e.add_argument("-o", "--output", required=True, help="model folder to write")
    e.add_argument("--dtype", choices=DTYPES, default="float16", help="stored precision (default float16)")
    e.add_argument("--note", help="a line stored in keysync.json (what the model is, how it was trained)")
    e.add_argument(
        "--guidance", metavar="A,R", type=parse_guidance,
        help="default " + GUIDANCE_HELP + ", stored in keysync.json (dub and bench use them unless told otherwise)",
    )
    e.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    e.set_defaults(func=run_export)

    d = subparsers.add_parser(
        "download",
        help="fetch the released KeySync weights, HuBERT, WavLM and the SVD VAE, and convert them",
        description="Fetch from the Hugging Face hub and write a ready model folder (with audio/hubert and audio/wavlm).",
    )
    d.add_argument("folder", nargs="?", help="model folder to write (default: in the Hugging Face cache folder, where dub looks when given no --model)")
    d.add_argument("--trust-pickle", action="store_true", help="allow full unpickling of the released .pt files")
    d.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    d.set_defaults(func=lambda args: _download(args))


def run_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from ..errors import KeySyncError
    from ..media.writer import check_output_path
    from .convert import convert_checkpoints

    given = [("checkpoint", args.keyframe_ckpt), ("checkpoint", args.interpolation_ckpt), ("--vae", args.vae)]
    for what, path in given + [("--official-config", c) for c in args.official_config]:
        if path is not None and not Path(path).exists():  # before reading a 1.5 B-parameter checkpoint
            raise KeySyncError(f"{what} not found: {path}; give the path of the downloaded file")
    out = check_output_path(args.output, inputs=(args.keyframe_ckpt, args.interpolation_ckpt, args.vae), overwrite=args.overwrite, folder=True)
    model = convert_checkpoints(
        args.keyframe_ckpt,
        args.interpolation_ckpt,
        official_configs=args.official_config,
        vae_path=args.vae,
        trust_pickle=args.trust_pickle,
    )
    model.save_pretrained(out, overwrite=args.overwrite, dtype=getattr(torch, args.dtype))
    print(f"wrote {out}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from ..media.writer import check_output_path
    from .download import download, released_model_dir

    args.folder = args.folder or released_model_dir()
    check_output_path(args.folder, overwrite=args.overwrite, folder=True)
    download(args.folder, trust_pickle=args.trust_pickle, overwrite=args.overwrite)
    return 0


def run_export(args: argparse.Namespace) -> int:
    import torch

    from ..media.writer import check_output_path
    from .model import KeySyncModel

    check_output_path(args.output, inputs=(args.model,), overwrite=args.overwrite, folder=True)
    model = KeySyncModel.from_pretrained(args.model)
    if args.note:
        model.info["note"] = args.note
    if args.guidance:
        model.info["guidance"] = list(args.guidance)
    model.info["crops"] = model.crop_plan  # named outright, so the folder does not depend on a default
    model.save_pretrained(args.output, overwrite=args.overwrite, dtype=getattr(torch, args.dtype))
    print(f"wrote {args.output} ({args.dtype})")
    return 0
