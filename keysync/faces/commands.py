"""``keysync faces``: before a long run, see which faces are found, which one will be dubbed, and its mask."""

from __future__ import annotations

import argparse

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "faces",
        help="list the faces in a video and preview the one to dub with its mask",
        description=(
            "Track every face through VIDEO and print one line per track (the frames it appears in); say "
            "which face will be dubbed (by default the largest in each shot) and, with -o, draw the boxes and "
            "the mask. --json writes the tracks as data."
        ),
    )
    p.add_argument("video", help="input video")
    choose = p.add_mutually_exclusive_group()
    choose.add_argument("--face-index", type=int, metavar="K", help="dub face track K (as listed by this command)")
    choose.add_argument("--point", metavar="FRAME,X,Y", help="dub the face whose box contains pixel X,Y on frame FRAME")
    p.add_argument("-o", "--output", metavar="PREVIEW", help="preview: .png (one frame) or .mp4 (the whole video)")
    p.add_argument("--audio", metavar="FILE", help="speech track to put in an .mp4 preview (checked before tracking)")
    p.add_argument("--json", metavar="FILE", help="write the tracks, shots and target as JSON")
    p.add_argument("--backend", default="mediapipe", choices=["mediapipe", "dlib", "face-alignment"], help="landmark back end")
    p.add_argument("--model", metavar="DIR", help="show what `keysync dub --model DIR` cuts and pastes: its crop size, crop plan "
                   "and mask (default: the shipped small model, as dub's)")
    p.add_argument("--mask", default=None, choices=["box", "heart", "mouth", "full"], help="mask to show (default: the model's)")
    p.add_argument("--paste", default="jaw", choices=["jaw", "mask"],
                   help="show the mask down to the line under the jaw that keysync dub pastes to (jaw, its default) or all of it")
    p.add_argument("--size", type=int, default=None, help="crop resolution in pixels (default: the model's)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=run_faces)

    o = subparsers.add_parser(
        "occluders",
        help="track an occluder (a hand, a microphone) from clicks on it: masks for keysync dub --occluders",
        description=(
            "Click on something in front of the face (--point X,Y in video pixels, on frame --frame) and SAM 2 "
            "tracks it backward to the first frame and forward to the last. Writes OUTPUT.npy, one mask per "
            "video frame (1 = occluder), for `keysync dub VIDEO AUDIO --occluders OUTPUT.npy`. Find the pixel "
            "with `keysync faces VIDEO -o frame.png`; check the result with --preview."
        ),
    )
    o.add_argument("video", help="input video")
    o.add_argument("-o", "--output", required=True, metavar="MASKS.npy", help="masks to write (frames x height x width, uint8)")
    o.add_argument("--point", action="append", default=[], metavar="X,Y", help="a pixel on the occluder (repeatable)")
    o.add_argument("--negative", action="append", default=[], metavar="X,Y", help="a pixel that is not the occluder, e.g. the chin (repeatable)")
    o.add_argument("--frame", type=int, default=0, help="the frame the points are on (default 0)")
    o.add_argument("--segmenter", default=None, metavar="DIR_OR_ID", help="SAM 2 model: a local folder or a hub id (default facebook/sam2.1-hiera-tiny)")
    o.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    o.add_argument("--preview", metavar="PREVIEW.mp4", help="also write the video with the masks drawn in red")
    o.add_argument("--overwrite", action="store_true", help="replace existing output files")
    o.set_defaults(func=run_occluders)


def _parse_point(text: str | None):
    from ..errors import KeySyncError

    if text is None:
        return None
    try:
        f, x, y = text.split(",")
        return int(f), float(x), float(y)
    except ValueError:
        raise KeySyncError(f"--point {text!r} is not FRAME,X,Y; give e.g. --point 0,960,540") from None


def parse_xy(text: str, flag: str) -> tuple[float, float]:
    """'X,Y' given to ``flag`` -> pixel coordinates."""
    from ..errors import KeySyncError

    try:
        x, y = text.split(",")
        return float(x), float(y)
    except ValueError:
        raise KeySyncError(f"{flag} {text!r} is not X,Y; give pixel coordinates, e.g. {flag} 640,420") from None


def run_occluders(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..media.writer import check_output_path
    from .occluders import DEFAULT_SEGMENTER, Clicks, check_request, load_segmenter, preview_masks, track_occluders

    from ..errors import KeySyncError

    clicks = Clicks(args.frame, [parse_xy(p, "--point") for p in args.point], [parse_xy(p, "--negative") for p in args.negative])
    info = check_request(args.video, args.output, clicks, args.overwrite)
    if 0 < info.frame_count <= clicks.frame:  # before loading SAM 2
        raise KeySyncError(f"the clicked frame {clicks.frame} is past the video's last frame ({info.frame_count - 1}); give a frame index it has (--frame)")
    if args.preview:
        check_output_path(args.preview, inputs=[args.video, args.output], overwrite=args.overwrite)
    model = load_segmenter(args.segmenter or DEFAULT_SEGMENTER, args.device)
    out = track_occluders(args.video, args.output, clicks, model, overwrite=args.overwrite)
    print(f"wrote {out}")
    if args.preview:
        preview_masks(args.video, out, Path(args.preview), overwrite=args.overwrite)
        print(f"wrote {args.preview}")
    return 0


def run_faces(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import cv2

    from ..errors import KeySyncError
    from ..files import write_atomic
    from ..media.audio import load_audio
    from ..media.video import probe_video, read_frames
    from ..media.writer import check_output_path
    from ..models.model import crop_geometry, shipped_model_dir
    from .backends import load_backend
    from .crops import plan_crops
    from .paste import jaw_limits
    from .preview import boxes_by_frame, preview_frame
    from .render import render_through_crops
    from .tracking import select_target, track_faces

    point = _parse_point(args.point)
    if args.face_index is not None and args.face_index < 0:
        raise KeySyncError(f"--face-index {args.face_index} is negative; give a face number this command lists (0, 1, ...)")
    if args.size is not None and args.size < 16:
        raise KeySyncError(f"--size {args.size}: give the model's crop size in pixels (512 for the official model)")
    geometry = crop_geometry(args.model or shipped_model_dir())
    size, mask = args.size or geometry.size, args.mask or geometry.mask
    outputs = [o for o in (args.output, args.json) if o]
    for out in outputs:
        check_output_path(out, inputs=[args.video, args.audio], overwrite=args.overwrite)
    if args.output and Path(args.output).suffix.lower() not in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
        raise KeySyncError(f"{args.output}: the preview must be {', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)}")
    info = probe_video(args.video)
    if args.audio:
        load_audio(args.audio)  # fail now, not after tracking
    result = track_faces(read_frames(args.video), load_backend(args.backend))
    target = select_target(result, face_index=args.face_index, point=point)
    crops = plan_crops(target, result.times, size=size, follow=geometry.plan)
    limits = jaw_limits(target) if args.paste == "jaw" else [None] * result.num_frames

    print(f"{args.video}: {info.width}x{info.height}, {result.num_frames} frames, {float(info.average_rate):.3f} fps, {len(result.shot_starts)} shot(s)")
    for track in result.tracks:
        ranges = ", ".join(f"{a}-{b}" for a, b in track.frame_ranges())
        w = track.mean_area ** 0.5
        print(f"face {track.index}: frames {ranges} ({len(track.frames)} frames), about {w:.0f} px")
    chosen = sorted({int(t) for t in target.track_index if t >= 0})
    how = "by index" if args.face_index is not None else "by point" if point else "largest in each shot"
    if chosen:
        print(f"dubbing: face {', '.join(map(str, chosen))} ({how}) on {int(target.present.sum())} of {result.num_frames} frames")
    else:
        print("dubbing: no face found; the video would pass through unchanged")

    if args.json:
        data = result.to_json()
        data.update(video=str(args.video), fps=float(info.average_rate), target={"selection": how, "tracks": chosen, "frames": [int(i) for i in target.present.nonzero()[0]]})
        write_atomic(Path(args.json), lambda tmp: tmp.write_text(json.dumps(data, indent=1)))
        print(f"wrote {args.json}")
    if args.output:
        out = Path(args.output)
        table = boxes_by_frame(result)
        if out.suffix.lower() in VIDEO_SUFFIXES:
            render_through_crops(
                args.video, out, target, [None] * result.num_frames,
                decorate=lambda image, i: preview_frame(image, i, table.get(i, []), target, crops[i], mask, limits[i]),
                audio_path=args.audio,
                overwrite=args.overwrite,
            )
        else:
            present = target.present.nonzero()[0]
            show = int(present[len(present) // 2]) if len(present) else 0
            frame = next(f for f in read_frames(args.video) if f.index == show)
            image = preview_frame(frame.image, show, table.get(show, []), target, crops[show], mask, limits[show])
            ok, data = cv2.imencode(out.suffix.lower(), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            if not ok:
                raise KeySyncError(f"could not encode {out}")
            write_atomic(out, lambda tmp: tmp.write_bytes(data.tobytes()))
        print(f"wrote {out}")
    return 0
