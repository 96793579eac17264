"""The dubbing page (Gradio Blocks) and what its buttons run.

Files: the server makes one scratch folder (Gradio's upload cache lives in it too) and removes it when it
stops; each browser session gets ``sessions/<id>/`` inside it for its previews and results, removed when
the tab is closed; a job writes into its own ``job-*`` folder there, removed on error or cancel.
"""


import argparse
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import KeySyncError

DEFAULT_FACE = "largest in each shot"
MODEL_MASK = "the model's"
OCCLUDER_NOTE = ("Occluders: clicking on a hand or microphone needs SAM 2, which this page does not run; "
                 "use `keysync dub --occluder-point X,Y` (or `keysync occluders`) from the command line.")
log = logging.getLogger(__name__)


@dataclass
class Server:
    """What every session shares: the models offered, the loaded pipelines, the scratch folder, the limits."""

    models: dict[str, str]  # name on the page -> model folder
    root: Path
    device: str = "cpu"
    max_seconds: float = 600.0
    pipelines: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    example: tuple[str, str] | None = None

    def session_folder(self, session: str) -> Path:
        folder = self.root / "sessions" / session
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def end_session(self, session: str) -> None:
        shutil.rmtree(self.root / "sessions" / session, ignore_errors=True)

    def pipeline(self, name: str):
        """The named model, loaded once and kept (a job waits while another loads it)."""
        from ..pipeline.dub import KeySyncPipeline

        if name not in self.models:
            raise KeySyncError(f"model {name!r} is not offered by this server; choose one of {', '.join(self.models)}")
        with self.lock:
            if name not in self.pipelines:
                self.pipelines[name] = KeySyncPipeline.from_pretrained(self.models[name], device=self.device)
            return self.pipelines[name]

    def example_files(self) -> tuple[str, str]:
        """The bundled example (rendered on first use, then kept for every session)."""
        from .examples import make_example

        with self.lock:
            if self.example is None:
                folder = self.root / "example"
                folder.mkdir(exist_ok=True)
                self.example = tuple(str(p) for p in make_example(folder, seconds=2.0))
            return self.example

    def check_duration(self, path: str, what: str) -> None:
        from ..media.video import open_media

        with open_media(path) as media:
            seconds = media.duration / 1e6 if media.duration else 0.0
        if seconds > self.max_seconds:
            raise KeySyncError(f"the {what} is {seconds:.0f} s long; this server takes at most {self.max_seconds:.0f} s (keysync app --max-seconds)")


def one_line(err: BaseException, *paths: str | None) -> str:
    """The CLI's one-line message, with the server's upload paths shortened to the file names a user knows."""
    text = str(err) if isinstance(err, KeySyncError) else f"{type(err).__name__}: {err}"
    for path in paths:
        if path:
            text = text.replace(str(path), Path(path).name)
    return " ".join(text.split())


def face_choice_index(choice: str | None) -> int | None:
    """'face K: ...' -> K; the default choice -> None (the largest face in each shot, as dub's default)."""
    if not choice or choice == DEFAULT_FACE:
        return None
    return int(choice.split(":")[0].split()[1])


def face_choices(tracked) -> list[str]:
    return [DEFAULT_FACE] + [
        f"face {t.index}: frames {', '.join(f'{a}-{b}' for a, b in t.frame_ranges())}" for t in tracked.tracks
    ]


def track_video(video: str):
    """Every face track of the video, as ``keysync faces`` finds them."""
    from tqdm.auto import tqdm

    from ..faces.backends import load_backend
    from ..faces.tracking import track_faces
    from ..media.video import probe_video, read_frames

    info = probe_video(video)
    frames = tqdm(read_frames(video), total=info.frame_count or None, desc="tracking", unit="frame")
    return track_faces(frames, load_backend("mediapipe"))


def faces_preview(video: str, tracked, face: int | None, model_dir: str, mask: str | None, paste: str) -> np.ndarray:
    """The first frame showing the face to dub, every face on it boxed and numbered, and tinted what
    ``keysync dub`` with that model, mask and paste region regenerates there (``keysync faces``' picture)."""
    from ..faces.crops import plan_crops
    from ..faces.paste import jaw_limits
    from ..faces.preview import boxes_by_frame, preview_frame
    from ..faces.tracking import select_target
    from ..media.video import read_frames
    from ..models.model import crop_geometry

    geometry = crop_geometry(model_dir)
    target = select_target(tracked, face_index=face)
    crops = plan_crops(target, tracked.times, size=geometry.size, follow=geometry.plan)
    present = np.flatnonzero(target.present)
    show = int(present[0]) if len(present) else 0
    limit = jaw_limits(target)[show] if paste == "jaw" and len(present) else None
    image = next(f.image for f in read_frames(video) if f.index == show)
    return preview_frame(image, show, boxes_by_frame(tracked).get(show, []), target, crops[show], mask or geometry.mask, limit)


class _Notes(logging.Handler):
    """The stages' notes (what a length policy cut, a face that leaves) made on this thread, for the status line."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.thread, self.lines = threading.get_ident(), []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.lines.append(record.getMessage())


@contextlib.contextmanager
def collect_notes():
    handler = _Notes()
    logger = logging.getLogger("keysync")
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


def dub_defaults() -> argparse.Namespace:
    """`keysync dub`'s arguments as its parser fills them in: the page's defaults are the CLI's."""
    from ..cli import build_parser

    return build_parser().parse_args(["dub", "VIDEO", "AUDIO", "-o", "OUT.mp4"])


def dub_request(video, speech, face, model_dir, speed, steps, guidance, mask, paste, seed, long_audio, short_audio) -> argparse.Namespace:
    """The page's choices as `keysync dub`'s arguments, so that the CLI's own checks (and messages) apply."""
    from ..pipeline.commands import parse_guidance

    if guidance and guidance.strip():
        try:
            guidance = parse_guidance(guidance.strip())
        except argparse.ArgumentTypeError as err:
            raise KeySyncError(f"--guidance: {err}") from None
    else:
        guidance = None
    args = dub_defaults()
    args.__dict__.update(
        video=video, audio=speech, model=model_dir, speed=speed, steps=args.steps if steps is None else int(steps), guidance=guidance,
        seed=int(seed or 0), face_index=face, mask=None if mask == MODEL_MASK else mask, paste=paste, long_audio=long_audio,
        short_audio=short_audio,
    )
    return args


def build_page(server: Server):
    import gradio as gr

    from ..constants import SPEEDS

    defaults = dub_defaults()
    from ..pipeline.plan import LONG_AUDIO, SHORT_AUDIO

    def session_of(request: gr.Request) -> str:
        return request.session_hash or "anonymous"

    def load_example():
        video, speech = server.example_files()
        return video, speech, None

    def find_faces(video, model, mask, paste, request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        if not video:
            return None, gr.update(choices=[DEFAULT_FACE], value=DEFAULT_FACE), None, ""
        try:
            server.check_duration(video, "video")
            tracked = track_video(video)
            if not tracked.tracks:
                raise KeySyncError(f"no face found in {video}; give a video in which the speaker's face is visible")
            picture = preview_file(video, tracked, None, model, mask, paste, request)
            return tracked, gr.update(choices=face_choices(tracked), value=DEFAULT_FACE), picture, f"{len(tracked.tracks)} face(s) found"
        except Exception as err:  # a one-line message on the page, never a traceback
            log_unexpected(err)
            return None, gr.update(choices=[DEFAULT_FACE], value=DEFAULT_FACE), None, f"error: {one_line(err, video)}"

    def preview_file(video, tracked, face, model, mask, paste, request) -> str:
        import cv2

        image = faces_preview(video, tracked, face, server.models[model], None if mask == MODEL_MASK else mask, paste)
        fd, path = tempfile.mkstemp(suffix=".png", prefix="faces-", dir=server.session_folder(session_of(request)))
        os.close(fd)
        cv2.imwrite(path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        return path

    def update_preview(video, tracked, face, model, mask, paste, request: gr.Request):
        if not video or tracked is None:
            return gr.update(), gr.update()
        try:
            return preview_file(video, tracked, face_choice_index(face), model, mask, paste, request), gr.update()
        except Exception as err:
            log_unexpected(err)
            return gr.update(), f"error: {one_line(err, video)}"

    def pick_face_by_click(tracked, evt: gr.SelectData):
        """A click on the preview picks the face whose box holds that pixel on the frame shown."""
        if tracked is None:
            return gr.update()
        x, y = evt.index
        for track in tracked.tracks:
            for box in track.boxes[:1]:
                if box[0] <= x <= box[2] and box[1] <= y <= box[3]:
                    return next(c for c in face_choices(tracked) if face_choice_index(c) == track.index)
        return gr.update()

    def dub(video, speech, speech_video, face, model, speed, steps, guidance, mask, paste, seed, long_audio, short_audio,
            request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        """A generator, so that Cancel stops the job between frames and its folder is removed."""
        from ..media.audio import SAMPLE_RATE
        from ..media.video import probe_video
        from ..media.writer import VideoWriter
        from ..pipeline.commands import check_dub_request
        from ..pipeline.dub import DubOptions

        job = None
        try:
            if not video:
                raise KeySyncError("give a video to dub: upload one or use the example")
            if speech and speech_video:
                raise KeySyncError("give one speech track: a file or recording, or another video, not both")
            speech = speech or speech_video
            if not speech:
                raise KeySyncError("give the new speech: upload or record it, or upload a video whose audio to use")
            if model not in server.models:
                raise KeySyncError(f"model {model!r} is not offered by this server; choose one of {', '.join(server.models)}")
            args = dub_request(video, speech, face_choice_index(face), server.models[model], speed, steps, guidance, mask, paste, seed, long_audio, short_audio)
            check_dub_request(args)
            server.check_duration(video, "video")
            server.check_duration(speech, "speech")
            job = Path(tempfile.mkdtemp(prefix="job-", dir=server.session_folder(session_of(request))))
            name, started = f"{Path(video).name} with {model}", time.monotonic()
            say(f"{name}: started")
            yield "loading the model", None, None, None
            pipe = server.pipeline(model)
            options = DubOptions(
                speed=args.speed, steps=args.steps, guidance=args.guidance, seed=args.seed, face_index=args.face_index, mask=args.mask,
                paste=args.paste, long_audio=args.long_audio, short_audio=args.short_audio, progress=True,
            )
            with collect_notes() as notes:
                out = pipe(video, speech, options=options)
            yield "dubbing", None, None, None
            info = probe_video(video)
            output = job / f"{Path(video).stem}-dubbed.mp4"
            with VideoWriter(output, info.width, info.height, rate=info.average_rate, time_base=info.time_base,
                             audio=out.audio, audio_rate=SAMPLE_RATE, crf=options.crf) as writer:
                for k, (seconds, image) in enumerate(zip(out.times, out.frames)):
                    writer.write(image, float(seconds))
                    yield f"dubbing: frame {k + 1} of {len(out.times)}", None, None, None
            done = f"done: {info.width}x{info.height}, {len(out.times)} frames, {len(out.audio) / SAMPLE_RATE:.2f} s"
            yield " ".join([done] + [f"({n})" for n in notes]), str(output), str(output), video
            say(f"{name}: done in {time.monotonic() - started:.1f} s")
            job = None  # kept: the page serves it until the session ends
        except Exception as err:
            log_unexpected(err)
            yield f"error: {one_line(err, video, speech)}", None, None, None
        finally:  # an error, or Cancel (the generator is closed): nothing of the job is left
            if job is not None:
                shutil.rmtree(job, ignore_errors=True)
                say(f"{name}: stopped, its files removed")

    with gr.Blocks(title="keysync", analytics_enabled=False) as page:
        gr.Markdown("# keysync: dub a video\nUpload a video and the new speech, choose the face, dub. "
                    "The options are `keysync dub`'s, with its defaults.")
        tracked = gr.State(None)
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="video to dub", sources=["upload"], elem_id="video")
                example = gr.Button("use the example: two synthetic speakers and a third one's speech", elem_id="example", size="sm")
            with gr.Column():
                speech = gr.Audio(label="new speech: a file or a recording", sources=["upload", "microphone"], type="filepath", elem_id="speech")
                speech_video = gr.Video(label="or the speech of another video", sources=["upload"], elem_id="speech-video")
        with gr.Row():
            faces = gr.Image(label="faces (click one to dub it; tinted: what is regenerated)", interactive=False, elem_id="faces", height=320)
            with gr.Column():
                face = gr.Dropdown([DEFAULT_FACE], value=DEFAULT_FACE, label="face to dub (--face-index)", elem_id="face")
                names = list(server.models)
                model = gr.Dropdown(names, value=names[0], label="--model", elem_id="model")
                with gr.Row():
                    speed = gr.Dropdown(list(SPEEDS), value=defaults.speed, label="--speed", elem_id="speed")
                    steps = gr.Number(defaults.steps, precision=0, minimum=1, label="--steps (empty: the speed's)", elem_id="steps")
                guidance = gr.Textbox("", label="--guidance A,R (empty: the model's)", elem_id="guidance")
                with gr.Row():
                    mask = gr.Dropdown([MODEL_MASK, "box", "heart", "mouth", "full"], value=MODEL_MASK, label="--mask", elem_id="mask")
                    paste = gr.Radio(["jaw", "mask"], value=defaults.paste, label="--paste", elem_id="paste")
                seed = gr.Number(defaults.seed, precision=0, label="--seed", elem_id="seed")
                with gr.Row():
                    long_audio = gr.Radio(list(LONG_AUDIO), value=defaults.long_audio, label="--long-audio", elem_id="long-audio")
                    short_audio = gr.Radio(list(SHORT_AUDIO), value=defaults.short_audio, label="--short-audio", elem_id="short-audio")
                gr.Markdown(OCCLUDER_NOTE, elem_id="occluders")
        with gr.Row():
            run = gr.Button("dub", variant="primary", elem_id="dub")
            cancel = gr.Button("cancel", variant="stop", elem_id="cancel")
        status = gr.Textbox(label="status", interactive=False, elem_id="status")
        with gr.Row():
            source = gr.Video(label="source", interactive=False, elem_id="source")
            result = gr.Video(label="dubbed", interactive=False, elem_id="result")
        download = gr.File(label="download", interactive=False, elem_id="download")

        example.click(load_example, outputs=[video, speech, speech_video], concurrency_id="example")
        video.change(find_faces, [video, model, mask, paste], [tracked, face, faces, status], concurrency_id="faces")
        for control in (face, model, mask, paste):
            control.change(update_preview, [video, tracked, face, model, mask, paste], [faces, status], concurrency_id="faces")
        faces.select(pick_face_by_click, [tracked], [face], queue=False)
        job = run.click(dub, [video, speech, speech_video, face, model, speed, steps, guidance, mask, paste, seed, long_audio, short_audio],
                        [status, result, download, source], concurrency_id="dub", concurrency_limit=1)
        cancel.click(lambda: "cancelled", outputs=[status], cancels=[job], queue=False)

        def end_session(request: gr.Request):
            server.end_session(session_of(request))

        page.unload(end_session)
    return page


def say(line: str) -> None:
    """One line on the server's console per job event (the operator's log)."""
    print(f"keysync app: {line}", file=sys.stderr, flush=True)


def log_unexpected(err: BaseException) -> None:
    """A user error is only shown on the page; anything else also goes to the server's log with its traceback."""
    if not isinstance(err, KeySyncError):
        log.error("unexpected error in a page job", exc_info=err)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def serve(args: argparse.Namespace, models: dict[str, str]) -> None:
    """Build the page and serve it until Ctrl-C; the scratch folder goes with the server."""
    root = Path(tempfile.mkdtemp(prefix="keysync-app-", dir=args.temp_dir))
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the server as Ctrl-C does, so the scratch folder goes too
    os.environ["GRADIO_TEMP_DIR"] = str(root)  # read when gradio is imported: uploads land in the scratch folder
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr

        server = Server(models, root, device=args.device, max_seconds=args.max_seconds)
        page = build_page(server)
        page.queue(max_size=args.queue_size, default_concurrency_limit=1)
        print(f"keysync app: serving on http://{args.host}:{args.port} (Ctrl-C stops it)", file=sys.stderr)
        page.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=args.max_upload_mb * gr.FileSize.MB,
                    ssr_mode=False, show_error=False, quiet=True, footer_links=[])
    finally:
        shutil.rmtree(root, ignore_errors=True)
