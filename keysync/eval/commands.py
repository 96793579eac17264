"""``keysync eval``: lip-sync and quality metrics of dubbed videos (one file, or a folder paired by name)."""

from __future__ import annotations

import argparse

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm")
AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".m4a", ".aac", ".ogg", *VIDEO_SUFFIXES)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score dubbed videos: LSE-C / LSE-D (SyncNet), PSNR / SSIM / LPIPS / FID / FVD / CSIM against the source, LipLeak",
        description=(
            "Score OUTPUTS (a dubbed video, or a folder of them) per clip and in total with 95%% intervals. "
            "A folder is paired by file name with --sources and --audio folders. LSE-C / LSE-D need SyncNet's "
            "weights (--syncnet); PSNR / SSIM need the source videos, and LPIPS, FID, FVD and CSIM their networks' "
            "weights too (--lpips-alexnet and --lpips-linear, --inception, --i3d, --arcface, or --weights-config). "
            "See docs/eval.md."
        ),
    )
    p.add_argument("outputs", nargs="?", help="dubbed video, or a folder of them")
    p.add_argument("--sources", metavar="SRC", help="the video(s) before dubbing: a file, or a folder with the same file names")
    p.add_argument("--audio", metavar="AUD", help="the driving speech: a file, or a folder with the same file names "
                   "(default: each output's own audio track)")
    p.add_argument("--syncnet", metavar="PATH", help="SyncNet weights: the reference's syncnet_v2.model or a .safetensors "
                   "copy (without it LSE-C / LSE-D are skipped)")
    p.add_argument("--inception", metavar="PATH", help="FID's Inception: pytorch-fid's pt_inception-2015-12-05-6726825d.pth "
                   "(without it FID is skipped)")
    p.add_argument("--i3d", metavar="PATH", help="FVD's I3D: the TorchScript i3d_torchscript.pt (without it FVD is skipped)")
    p.add_argument("--arcface", metavar="PATH", help="CSIM's ArcFace: insightface's w600k_r50.onnx from buffalo_l.zip "
                   "(without it CSIM is skipped)")
    p.add_argument("--lpips-alexnet", metavar="PATH", help="LPIPS's AlexNet: torchvision's alexnet-owt-7be5be79.pth")
    p.add_argument("--lpips-linear", metavar="PATH", help="LPIPS's linear layers: lpips' weights/v0.1/alex.pth "
                   "(without both LPIPS is skipped)")
    p.add_argument("--weights-config", metavar="FILE", help="a YAML file naming the weight files (keys syncnet, inception, i3d, "
                   "arcface, lpips_alexnet, lpips_linear; paths relative to the file); the flags above win over it")
    p.add_argument("--metrics", metavar="LIST", help="comma-separated metrics to compute, of lse,psnr,ssim,lipleak,jitter,"
                   "fid,fvd,csim,lpips (default: every one whose weights are given)")
    p.add_argument("--json", metavar="FILE", help="write every clip's metrics, its SyncNet offset curve and the totals as JSON")
    p.add_argument("--csv", metavar="FILE", help="write one row per clip and the totals as CSV")
    p.add_argument("--report", metavar="DIR", help="write a page to read (DIR/index.html and its PNGs): the totals, per-clip "
                   "charts, SyncNet's offset curve of the worst clips and their least confident frames")
    p.add_argument("--face-index", type=int, metavar="K", help="score face track K (as `keysync faces` lists them; default: the largest)")
    p.add_argument("--backend", default="mediapipe", choices=["mediapipe", "dlib", "face-alignment"], help="landmark back end")
    p.add_argument("--convert-syncnet", nargs=2, metavar=("IN", "OUT"),
                   help="instead of scoring: write SyncNet weights IN (syncnet_v2.model) as safetensors OUT")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (and an earlier --report folder)")
    p.set_defaults(func=run_eval)


def _named(folder, suffixes) -> dict:
    """{stem: path} of the folder's files with one of ``suffixes``."""
    return {f.stem: f for f in sorted(folder.iterdir()) if f.is_file() and f.suffix.lower() in suffixes}


def pair_clips(outputs, sources=None, audio=None) -> list[tuple[str, object, object, object]]:
    """(name, output, source or None, audio or None) per clip. A folder pairs by file name; every name
    without its partner is a ``keysync: ...`` note, and the clip is scored with what it has."""
    from pathlib import Path

    from ..errors import KeySyncError
    from .score import log

    outputs = Path(outputs)
    given = {"--sources": sources, "--audio": audio}
    for flag, path in {"OUTPUTS": outputs, **given}.items():
        if path is not None and not Path(path).exists():
            raise KeySyncError(f"{flag} {path} does not exist; give a video file or a folder of them")
    if outputs.is_file():
        for flag, path in given.items():
            if path is not None and Path(path).is_dir():
                raise KeySyncError(f"{flag} {path} is a folder but OUTPUTS is one file; give a file for {flag} too")
        return [(outputs.stem, outputs, sources and Path(sources), audio and Path(audio))]
    clips = _named(outputs, VIDEO_SUFFIXES)
    if not clips:
        raise KeySyncError(f"{outputs} holds no video ({', '.join(VIDEO_SUFFIXES)}); give the folder of dubbed videos")
    partners = {}
    for flag, path, suffixes in (("--sources", sources, VIDEO_SUFFIXES), ("--audio", audio, AUDIO_SUFFIXES)):
        if path is not None and not Path(path).is_dir():
            raise KeySyncError(f"{flag} {path} is a file but OUTPUTS is a folder; give a folder for {flag} too")
        partners[flag] = _named(Path(path), suffixes) if path is not None else None
        for stem in sorted(set(partners[flag] or ()) - set(clips)):
            log.warning(f"{flag} {partners[flag][stem].name} has no output named {stem}.* in {outputs}; not scored")
    pairs = []
    for stem, path in clips.items():
        found = {}
        for flag, named in partners.items():
            found[flag] = named.get(stem) if named is not None else None
            if named is not None and found[flag] is None:
                what = "PSNR / SSIM / LPIPS / FID / FVD / CSIM not measured" if flag == "--sources" else "its own audio track is used"
                log.warning(f"{path.name}: no file named {stem}.* in {given[flag]} ({flag}); {what}")
        pairs.append((stem, path, found["--sources"], found["--audio"]))
    return pairs


def run_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import KeySyncError
    from ..media.writer import check_output_path

    if args.convert_syncnet:
        if args.outputs:
            raise KeySyncError("--convert-syncnet converts weights and scores nothing; leave out OUTPUTS")
        source, target = args.convert_syncnet
        check_output_path(target, inputs=(source,), overwrite=args.overwrite)
        from .syncnet import convert_syncnet

        print(f"wrote {convert_syncnet(source, target)}")
        return 0
    if not args.outputs:
        raise KeySyncError("give OUTPUTS, a dubbed video or a folder of them (or --convert-syncnet IN OUT)")
    for path in (args.json, args.csv):
        if path is not None:
            check_output_path(path, inputs=(args.outputs,), overwrite=args.overwrite)
    if args.json and args.csv and Path(args.json).absolute() == Path(args.csv).absolute():
        raise KeySyncError("--json and --csv name the same file; give two paths")
    if args.report:
        from .report import check_report_folder

        check_report_folder(args.report, inputs=(args.outputs, args.sources, args.audio, args.json, args.csv), overwrite=args.overwrite)
    pairs = pair_clips(args.outputs, args.sources, args.audio)

    from .quality import load_quality_nets
    from .report import print_table, write_csv, write_json
    from .score import log, score_files, summarise
    from .syncnet import load_syncnet
    from .weights import WEIGHTS, resolve_weights, select_metrics

    # a missing or unreadable weight file: one line, before any work; a metric without weights: skipped with one line
    weights = resolve_weights({key: getattr(args, key) for key in WEIGHTS}, args.weights_config)
    metrics, skipped = select_metrics(args.metrics, weights)
    net = load_syncnet(weights["syncnet"]) if "lse" in metrics else None
    nets = load_quality_nets(weights, metrics)
    for note in skipped:
        log.warning(note)
    results = score_files(pairs, net, args.backend, args.face_index, quality_nets=nets,
                          metrics=metrics if args.metrics else None)
    total = summarise(results)
    print_table(results, total)
    if args.json:
        write_json(args.json, results, total)
    if args.csv:
        write_csv(args.csv, results, total)
    if args.report:
        from .report import write_report

        context = {"outputs": args.outputs, "sources": args.sources or "none (no PSNR / SSIM)",
                   "audio": args.audio or "each output's own audio track", "SyncNet weights": args.syncnet or "none"}
        print(f"report: {write_report(args.report, results, total, overwrite=args.overwrite, context=context)}")
    failed = [r.name for r in results if r.error]
    if failed:
        log.warning(f"{len(failed)} of {len(results)} clips could not be scored: {', '.join(failed)}")
    return 1 if failed else 0

