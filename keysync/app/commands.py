"""``keysync app``: serve the dubbing page on this machine (127.0.0.1 unless ``--host`` says otherwise)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "app", help="serve a web page for dubbing (Gradio)",
        description="Serve a web page where a video and a speech track are uploaded, the face is chosen, and the "
        "dub runs with the models the server was started with. One dub runs at a time; the others wait in a queue.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--model", action="append", default=[], metavar="DIR",
                   help="a model folder the page offers (repeatable); the shipped small model is always offered as `small`")
    p.add_argument("--segmenter", metavar="DIR_OR_ID",
                   help="SAM 2 model for occluder clicks on the page: a folder, or a hub id in the Hugging Face cache (the "
                   "server downloads nothing); default: facebook/sam2.1-hiera-tiny when it is in the cache, else the page "
                   "offers no occluder clicks and says how to enable them")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--max-upload-mb", type=int, default=500, help="largest upload in MB (default 500)")
    p.add_argument("--max-seconds", type=float, default=600, help="longest video or speech in seconds (default 600)")
    p.add_argument("--queue-size", type=int, default=20, help="jobs that may wait in the queue (default 20)")
    p.add_argument("--session-timeout", type=float, default=21600, metavar="SECONDS",
                   help="a session that has done nothing (no upload, preview, click or dub) for this long has ended, as when "
                   "its tab closes: its files are removed (default 21600, 6 hours); a running job keeps its session")
    p.add_argument("--temp-dir", metavar="DIR", help="where the server's scratch folder (uploads, results) is made "
                   "(default: the system's temporary folder); it is removed when the server stops")
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link (off by default)")
    p.set_defaults(func=run_app)


def run_app(args: argparse.Namespace) -> int:
    from ..errors import KeySyncError
    from ..pipeline.commands import check_device

    if not 0 < args.port < 65536:
        raise KeySyncError(f"--port {args.port}: give a port between 1 and 65535")
    for flag, value in (("--max-upload-mb", args.max_upload_mb), ("--max-seconds", args.max_seconds), ("--queue-size", args.queue_size),
                        ("--session-timeout", args.session_timeout)):
        if value <= 0:
            raise KeySyncError(f"{flag} {value}: give a positive number")
    models = model_choices(args.model)
    segmenter = segmenter_choice(args.segmenter)
    check_device(args.device)

    from .page import serve

    serve(args, models, segmenter)
    return 0


def model_choices(folders: list[str]) -> dict[str, str]:
    """Name shown on the page -> model folder: each ``--model`` folder by its name, then ``small``. A user
    picks a name; a path never comes from the page."""
    from pathlib import Path

    from ..errors import KeySyncError
    from ..models.model import crop_geometry, shipped_model_dir

    choices: dict[str, str] = {}
    for folder in folders:
        if not Path(folder).is_dir():
            raise KeySyncError(f"--model {folder} is not a folder; give a model folder made by `keysync download` or `keysync convert`")
        crop_geometry(folder)  # a folder that is not a model is refused now, not when a user picks it
        name, k = Path(folder).resolve().name, 2
        while name in choices or name == "small":
            name, k = f"{Path(folder).resolve().name}-{k}", k + 1
        choices[name] = str(Path(folder).resolve())
    choices["small"] = str(shipped_model_dir())
    return choices


def segmenter_choice(name: str | None) -> str | None:
    """The SAM 2 folder the page's occluder clicks use: ``--segmenter``'s folder, or its hub id's copy in the
    Hugging Face cache; without ``--segmenter``, the default SAM 2 when it is in the cache, else None (the page
    then offers no clicks and says why). A bad ``--segmenter`` is refused now, in one line."""
    from pathlib import Path

    from ..errors import KeySyncError
    from ..faces.occluders import DEFAULT_SEGMENTER

    if name is None:
        folder = _cached(DEFAULT_SEGMENTER)
        return str(folder) if folder is not None and _is_sam2(folder) else None
    fetch = f"where there is internet run `hf download {DEFAULT_SEGMENTER} --local-dir sam2` and pass --segmenter sam2"
    folder = Path(name) if Path(name).is_dir() else _cached(name)
    if folder is None:
        raise KeySyncError(f"--segmenter {name} is neither a folder nor a model in the Hugging Face cache; {fetch}")
    if not _is_sam2(folder):
        raise KeySyncError(f"--segmenter {name} is not a SAM 2 model folder (a config.json and its weights); {fetch}")
    return str(folder.resolve())


def _cached(repo: str):
    """A hub model's folder in the Hugging Face cache, or None: nothing is downloaded."""
    from pathlib import Path

    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, local_files_only=True))
    except (OSError, ValueError):  # not in the cache (LocalEntryNotFoundError), or not a hub id
        return None


def _is_sam2(folder) -> bool:
    import json

    try:
        kind = json.loads((folder / "config.json").read_text()).get("model_type", "")
    except (OSError, ValueError, AttributeError):
        return False
    return str(kind).startswith("sam2") and any(p.suffix in (".safetensors", ".bin") for p in folder.iterdir())
