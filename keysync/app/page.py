"""The dubbing page (Gradio Blocks) and what its buttons run.

Files: the server makes one scratch folder (Gradio's upload cache lives in it too) and removes it when it
stops. Each browser session gets ``sessions/<id>/`` inside it for its previews and results, and a job
writes into its own ``job-*`` folder there, removed on error or cancel. A session ends when its tab closes
(Gradio's unload event) or after ``--session-timeout`` without a job (a sweep); then its folder goes, and
so do its uploads unless another open session uses the same file. An ended session gets no folder back: an
event still running when its tab closed would otherwise make it again after the unload removed it.
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
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import KeySyncError

DEFAULT_FACE = "largest in each shot"
MODEL_MASK = "the model's"
ON_OCCLUDER, OFF_OCCLUDER = "on the occluder", "not the occluder"
OCCLUDER_OFF = ("Occluder clicks are off: this server has no SAM 2 model; start it with `keysync app --segmenter sam2` "
                "after `hf download facebook/sam2.1-hiera-tiny --local-dir sam2`.")
NO_CLICKS = {"frame": 0, "positive": [], "negative": [], "picture": None, "marked": None}
log = logging.getLogger(__name__)


class SessionEnded(KeySyncError):
    """An event of a session whose tab has closed (or that timed out): it gets no folder back."""


class JobStopped(Exception):
    """A job cancelled, or whose tab closed: it stops at its next step, saying nothing."""


@dataclass
class Session:
    last: float  # time.monotonic() of its last event's start or end
    running: int = 0  # its events running now
    uploads: set[str] = field(default_factory=set)  # the upload folders (names in the scratch folder) it used


@dataclass
class Server:
    """What every session shares: the models offered, the loaded pipelines, the scratch folder, the limits,
    and the sessions' bookkeeping (which are open, what they uploaded)."""

    models: dict[str, str]  # name on the page -> model folder
    root: Path
    device: str = "cpu"
    max_seconds: float = 600.0
    segmenter: str | None = None  # SAM 2 folder for occluder clicks; None: the page offers none
    session_timeout: float = 6 * 3600.0
    pipelines: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)  # loading models and the example
    example: tuple[str, str] | None = None
    sessions: dict[str, Session] = field(default_factory=dict)  # the open ones
    ended: set[str] = field(default_factory=set)
    claimed: set[str] = field(default_factory=set)  # upload folders some session used, until they are removed
    books: threading.Lock = field(default_factory=threading.Lock)  # guards sessions, ended and their uploads
    sam: object = None  # the loaded segmenter
    cancels: dict[str, float] = field(default_factory=dict)  # session -> time.monotonic() of its last Cancel

    def folder(self, session: str) -> Path:
        return self.root / "sessions" / session

    @contextlib.contextmanager
    def session(self, session: str, *uploads: str | None):
        """One event of ``session`` runs (it used ``uploads``): its folder, made on demand. An ended session's
        event is refused, and whatever it made is removed when it ends."""
        with self.books:
            if session in self.ended:
                raise SessionEnded("this page's session has ended (its tab was closed, or it sat idle); reload the page")
            state = self.sessions.setdefault(session, Session(time.monotonic()))
            state.running, state.last = state.running + 1, time.monotonic()
            state.uploads.update(self._upload_folders(uploads))
        try:
            folder = self.folder(session)
            folder.mkdir(parents=True, exist_ok=True)
            yield folder
        finally:
            with self.books:
                state.running, state.last = state.running - 1, time.monotonic()
                ended = session in self.ended
            if ended:
                self._remove(session)

    def alive(self, session: str) -> bool:
        return session not in self.ended

    def cancel(self, session: str) -> None:
        """Cancel was pressed: the session's job started before now says nothing more (Gradio may still hand
        on what its step in progress yields next, over the page's "cancelled")."""
        self.cancels[session] = time.monotonic()

    def stopped(self, session: str, since: float) -> bool:
        """The job ``session`` started at ``since`` is to stop: cancelled since, or its tab closed."""
        return self.cancels.get(session, -np.inf) >= since or not self.alive(session)

    def end_session(self, session: str) -> None:
        """The tab closed (or the session timed out): its folder goes, and its uploads that no open session uses."""
        with self.books:
            self.ended.add(session)
            self.sessions.pop(session, None)
        self._remove(session)

    def _remove(self, session: str) -> None:
        shutil.rmtree(self.folder(session), ignore_errors=True)
        with self.books:
            used = {name for state in self.sessions.values() for name in state.uploads}
            unused = [p for p in self.root.iterdir() if p.name in self.claimed and p.name not in used]
            self.claimed.intersection_update(used)
        for path in unused:
            shutil.rmtree(path, ignore_errors=True)

    def _upload_folders(self, paths) -> set[str]:
        """The folders of Gradio's upload cache (in the scratch folder) that hold ``paths``: each upload's own."""
        names = set()
        for path in paths:
            if not path:
                continue
            try:
                parts = Path(path).resolve().relative_to(self.root.resolve()).parts
            except ValueError:
                continue
            if len(parts) >= 2 and parts[0] not in ("sessions", "example"):
                names.add(parts[0])
        self.claimed.update(names)
        return names

    def sweep(self, now: float | None = None) -> list[str]:
        """End the sessions idle (no event running) for longer than ``session_timeout``, and remove the
        folders of sessions that are not open; the sessions ended."""
        now = time.monotonic() if now is None else now
        with self.books:
            idle = [s for s, state in self.sessions.items() if not state.running and now - state.last > self.session_timeout]
        for session in idle:
            self.end_session(session)
        with self.books:
            strays = [p for p in (self.root / "sessions").glob("*") if p.name not in self.sessions]
        for path in strays:  # an ended session's folder is removed when its last event ends; this is a second net
            shutil.rmtree(path, ignore_errors=True)
        return idle

    def sweep_forever(self) -> None:
        interval = min(60.0, self.session_timeout / 4)
        while True:
            time.sleep(interval)
            try:
                for session in self.sweep():
                    say(f"session {session} idle for {self.session_timeout:.0f} s: ended, its files removed")
            except Exception as err:  # the sweep must not stop; the next one tries again
                log.error("session sweep failed", exc_info=err)

    def pipeline(self, name: str):
        """The named model, loaded once and kept (a job waits while another loads it)."""
        from ..parallel import exempt_loaded_objects
        from ..pipeline.dub import KeySyncPipeline

        if name not in self.models:
            raise KeySyncError(f"model {name!r} is not offered by this server; choose one of {', '.join(self.models)}")
        with self.lock:
            if name not in self.pipelines:
                self.pipelines[name] = KeySyncPipeline.from_pretrained(self.models[name], device=self.device)
                exempt_loaded_objects()
            return self.pipelines[name]

    def segmenter_model(self):
        """The SAM 2 model, loaded once and kept, as `keysync dub --occluder-point` loads it."""
        from ..faces.occluders import load_segmenter

        if self.segmenter is None:
            raise KeySyncError("this server has no SAM 2 model for occluder clicks; start it with keysync app --segmenter DIR")
        with self.lock:
            if self.sam is None:
                self.sam = load_segmenter(self.segmenter, self.device)
            return self.sam

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


def dub_request(video, speech, face, model_dir, speed, steps, guidance, mask, paste, seed, long_audio, short_audio,
                clicks: dict | None = None, segmenter: str | None = None) -> argparse.Namespace:
    """The page's choices as `keysync dub`'s arguments, so that the CLI's own checks (and messages) apply;
    the occluder clicks as its ``--occluder-point``/``--occluder-negative``/``--occluder-frame``."""
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
    if clicks and clicks["positive"]:
        args.__dict__.update(
            occluder_point=[f"{x:g},{y:g}" for x, y in clicks["positive"]], occluder_negative=[f"{x:g},{y:g}" for x, y in clicks["negative"]],
            occluder_frame=int(clicks["frame"]), segmenter=segmenter,
        )
    return args


def clicks_as_options(clicks: dict | None) -> str:
    """The clicks as `keysync dub`'s options (what the page shows, and what a job runs with)."""
    if not clicks or not (clicks["positive"] or clicks["negative"]):
        return ""
    words = [f"--occluder-frame {clicks['frame']}"]
    words += [f"--occluder-point {x},{y}" for x, y in clicks["positive"]]
    words += [f"--occluder-negative {x},{y}" for x, y in clicks["negative"]]
    return " ".join(words)


def video_frame(video: str, index: int) -> np.ndarray:
    """Frame ``index`` of the video (RGB), or the CLI's one-line error for a frame it does not have."""
    from ..media.video import read_frames

    last = -1
    for frame in read_frames(video):
        if frame.index == index:
            return frame.image
        last = frame.index
    raise KeySyncError(f"--occluder-frame {index} is not a frame of the video (its last is {last}); give the index of the frame the points are on")


def mark_clicks(image: np.ndarray, clicks: dict) -> np.ndarray:
    """The clicked points drawn on the frame: green on the occluder, red off it, each ringed in white."""
    import cv2

    image = image.copy()
    radius = max(3, round(max(image.shape[:2]) / 80))
    for points, colour in ((clicks["positive"], (40, 220, 40)), (clicks["negative"], (230, 30, 30))):
        for x, y in points:
            cv2.circle(image, (int(x), int(y)), radius + 1, (255, 255, 255), 1, cv2.LINE_AA)
            cv2.circle(image, (int(x), int(y)), radius, colour, -1, cv2.LINE_AA)
    return image


def write_png(image: np.ndarray, folder: Path, prefix: str) -> str:
    import cv2

    fd, path = tempfile.mkstemp(suffix=".png", prefix=prefix, dir=folder)
    os.close(fd)
    cv2.imwrite(path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def build_page(server: Server):
    import gradio as gr

    from ..constants import SPEEDS

    defaults = dub_defaults()
    from ..pipeline.plan import LONG_AUDIO, SHORT_AUDIO

    def session_of(request: gr.Request) -> str:
        """The browser session's id; a call without one (a bare HTTP request) is a session of its own."""
        return request.session_hash or f"anonymous-{uuid.uuid4().hex}"

    def load_example():
        video, speech = server.example_files()
        return video, speech, None

    def claim_upload(path, request: gr.Request):
        """An uploaded or recorded speech track belongs to this session (its file goes when the session ends)."""
        if path:
            with contextlib.suppress(SessionEnded), server.session(session_of(request), path):
                pass

    def find_faces(video, model, mask, paste, request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        if not video:
            return None, gr.update(choices=[DEFAULT_FACE], value=DEFAULT_FACE), None, ""
        try:
            with server.session(session_of(request), video) as folder:
                server.check_duration(video, "video")
                tracked = track_video(video)
                if not tracked.tracks:
                    raise KeySyncError(f"no face found in {video}; give a video in which the speaker's face is visible")
                picture = preview_file(folder, video, tracked, None, model, mask, paste)
            return tracked, gr.update(choices=face_choices(tracked), value=DEFAULT_FACE), picture, f"{len(tracked.tracks)} face(s) found"
        except Exception as err:  # a one-line message on the page, never a traceback
            log_unexpected(err)
            return None, gr.update(choices=[DEFAULT_FACE], value=DEFAULT_FACE), None, f"error: {one_line(err, video)}"

    def preview_file(folder, video, tracked, face, model, mask, paste) -> str:
        image = faces_preview(video, tracked, face, server.models[model], None if mask == MODEL_MASK else mask, paste)
        return write_png(image, folder, "faces-")

    def update_preview(video, tracked, face, model, mask, paste, request: gr.Request):
        if not video or tracked is None:
            return gr.update(), gr.update()
        try:
            with server.session(session_of(request), video) as folder:
                return preview_file(folder, video, tracked, face_choice_index(face), model, mask, paste), gr.update()
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

    def occluder_frame(video, index, request: gr.Request):
        """The frame to click the occluder on (a new video starts at frame 0), without clicks."""
        if not video:
            return None, dict(NO_CLICKS), "", gr.update()
        try:
            with server.session(session_of(request), video) as folder:
                index = int(index or 0)
                picture = write_png(video_frame(video, index), folder, f"frame-{index}-")
            return picture, dict(NO_CLICKS, frame=index, picture=picture), "", gr.update()
        except Exception as err:
            log_unexpected(err)
            return None, dict(NO_CLICKS), "", f"error: {one_line(err, video)}"

    def new_video_frame(video, request: gr.Request):
        from ..media.video import probe_video

        picture, clicks, text, status = occluder_frame(video, 0, request)
        try:
            frames = probe_video(video).frame_count if video else 0
        except (KeySyncError, OSError):  # find_faces reports an unreadable file
            frames = 0
        return gr.update(value=0, maximum=max(1, frames - 1)), picture, clicks, text, status

    def add_click(clicks, kind, request: gr.Request, evt: gr.SelectData):
        """A click on the frame adds a point on the occluder (or off it), marked on the frame."""
        if not clicks or not clicks["picture"]:
            return gr.update(), clicks, gr.update(), gr.update()
        key = "positive" if kind == ON_OCCLUDER else "negative"
        clicks = dict(clicks, **{key: clicks[key] + [[int(evt.index[0]), int(evt.index[1])]]})
        return show_clicks(clicks, request)

    def clear_clicks(clicks, request: gr.Request):
        if not clicks or not clicks["picture"]:
            return gr.update(), clicks, "", gr.update()
        return show_clicks(dict(clicks, positive=[], negative=[]), request)

    def show_clicks(clicks, request):
        import cv2

        try:
            with server.session(session_of(request)) as folder:
                if clicks["marked"]:
                    Path(clicks["marked"]).unlink(missing_ok=True)
                clean = cv2.cvtColor(cv2.imread(clicks["picture"]), cv2.COLOR_BGR2RGB)
                marked = write_png(mark_clicks(clean, clicks), folder, f"clicks-{clicks['frame']}-") if clicks["positive"] or clicks["negative"] else None
            clicks = dict(clicks, marked=marked)
            return marked or clicks["picture"], clicks, clicks_as_options(clicks), gr.update()
        except Exception as err:
            log_unexpected(err)
            return gr.update(), clicks, gr.update(), f"error: {one_line(err)}"

    def queued(video, speech, speech_video, request: gr.Request):
        """A dub was asked for: the session is in use while its job waits in the queue."""
        with contextlib.suppress(SessionEnded), server.session(session_of(request), video, speech, speech_video):
            pass

    def dub(video, speech, speech_video, face, model, speed, steps, guidance, mask, paste, seed, long_audio, short_audio, clicks,
            request: gr.Request, progress=gr.Progress(track_tqdm=True)):
        """A generator, so that Cancel stops the job between frames and its folder is removed; a job whose tab
        has closed stops the same way."""
        from ..faces.occluders import track_occluders
        from ..media.audio import SAMPLE_RATE
        from ..media.video import probe_video
        from ..media.writer import VideoWriter
        from ..pipeline.commands import check_dub_request, check_occluder_clicks
        from ..pipeline.dub import DubOptions

        job, session, asked = None, session_of(request), time.monotonic()

        def said(line, *outputs):
            """The job's next status line, unless it has been cancelled or its tab closed meanwhile."""
            if server.stopped(session, asked):
                raise JobStopped
            return (line, *outputs) if outputs else (line, None, None, None)

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
            if clicks and clicks["negative"] and not clicks["positive"]:
                raise KeySyncError("the occluder clicks are all off it; click at least once on the occluder, or clear the clicks")
            args = dub_request(video, speech, face_choice_index(face), server.models[model], speed, steps, guidance, mask, paste, seed,
                               long_audio, short_audio, clicks if server.segmenter else None, server.segmenter)
            check_dub_request(args)
            occluder_clicks = check_occluder_clicks(args)  # the CLI's checks: the frame and the points are in the video
            server.check_duration(video, "video")
            server.check_duration(speech, "speech")
            with server.session(session, video, speech) as folder:
                job = Path(tempfile.mkdtemp(prefix="job-", dir=folder))
                name, started = f"{Path(video).name} with {model}", time.monotonic()
                say(f"{name}: started")
                occluders, kept = None, ""
                if occluder_clicks is not None:  # as `keysync dub --occluder-point` tracks it
                    yield said("tracking the occluder (SAM 2)")
                    occluders = str(track_occluders(video, job / "occluders.npy", occluder_clicks, server.segmenter_model()))
                    kept = f"the occluder clicked on frame {occluder_clicks.frame} kept from the source"
                yield said("loading the model")
                pipe = server.pipeline(model)
                options = DubOptions(
                    speed=args.speed, steps=args.steps, guidance=args.guidance, seed=args.seed, clips_per_call=args.batch_size,
                    face_index=args.face_index, mask=args.mask, occluders=occluders, paste=args.paste, long_audio=args.long_audio,
                    short_audio=args.short_audio, progress=True,
                )
                with collect_notes() as notes:
                    out = pipe(video, speech, options=options)
                yield said("dubbing")
                info = probe_video(video)
                output = job / f"{Path(video).stem}-dubbed.mp4"
                with VideoWriter(output, info.width, info.height, rate=info.average_rate, time_base=info.time_base,
                                 audio=out.audio, audio_rate=SAMPLE_RATE, crf=options.crf, encoder=options.encoder) as writer:
                    for k, (seconds, image) in enumerate(zip(out.times, out.frames)):
                        writer.write(image, float(seconds))
                        yield said(f"dubbing: frame {k + 1} of {len(out.times)}")
                done = f"done: {info.width}x{info.height}, {len(out.times)} frames, {len(out.audio) / SAMPLE_RATE:.2f} s"
                yield said(" ".join([done] + [f"({n})" for n in [kept, *notes] if n]), str(output), str(output), video)
                say(f"{name}: done in {time.monotonic() - started:.1f} s")
                job = None  # kept: the page serves it until the session ends
        except JobStopped:
            pass  # the page says "cancelled" (or is gone)
        except Exception as err:
            log_unexpected(err)
            if not server.stopped(session, asked):
                yield f"error: {one_line(err, video, speech)}", None, None, None
        finally:  # an error, Cancel (the generator is closed), or a closed tab: nothing of the job is left
            if job is not None:
                shutil.rmtree(job, ignore_errors=True)
                say(f"{name}: stopped, its files removed")

    with gr.Blocks(title="keysync", analytics_enabled=False) as page:
        gr.Markdown("# keysync: dub a video\nUpload a video and the new speech, choose the face, dub. "
                    "The options are `keysync dub`'s, with its defaults.")
        tracked = gr.State(None)
        clicks = gr.State(dict(NO_CLICKS))
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
                if server.segmenter is None:
                    gr.Markdown(OCCLUDER_OFF, elem_id="occluders")
        if server.segmenter is not None:
            with gr.Row(elem_id="occluder"):
                occluder = gr.Image(label="occluder (optional): click on a hand or microphone in front of the face", interactive=False,
                                    elem_id="occluder-image", height=320)
                with gr.Column():
                    gr.Markdown("SAM 2 tracks what you click through the whole video, and the dub keeps it from the source, "
                                "as `keysync dub --occluder-point` does.")
                    frame = gr.Slider(0, 1, value=0, step=1, label="--occluder-frame: the frame to click on", elem_id="occluder-frame")
                    kind = gr.Radio([ON_OCCLUDER, OFF_OCCLUDER], value=ON_OCCLUDER, label="a click marks a point", elem_id="click-kind")
                    clicks_text = gr.Textbox("", label="the clicks, as keysync dub's options", placeholder="no clicks: no occluder is kept",
                                             interactive=False, elem_id="clicks")
                    clear = gr.Button("clear the clicks", size="sm", elem_id="clear-clicks")
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
        for upload in (speech, speech_video):
            upload.change(claim_upload, [upload], None, queue=False)
        if server.segmenter is not None:
            video.change(new_video_frame, [video], [frame, occluder, clicks, clicks_text, status], concurrency_id="frame")
            frame.release(occluder_frame, [video, frame], [occluder, clicks, clicks_text, status], concurrency_id="frame")
            occluder.select(add_click, [clicks, kind], [occluder, clicks, clicks_text, status], queue=False)
            clear.click(clear_clicks, [clicks], [occluder, clicks, clicks_text, status], queue=False)
        run.click(queued, [video, speech, speech_video], None, queue=False)
        job = run.click(dub, [video, speech, speech_video, face, model, speed, steps, guidance, mask, paste, seed, long_audio, short_audio, clicks],
                        [status, result, download, source], concurrency_id="dub", concurrency_limit=1)
        def cancel_job(request: gr.Request):
            server.cancel(session_of(request))
            return "cancelled"

        cancel.click(cancel_job, outputs=[status], cancels=[job], queue=False)

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


def serve(args: argparse.Namespace, models: dict[str, str], segmenter: str | None = None) -> None:
    """Build the page and serve it until Ctrl-C; the scratch folder goes with the server."""
    root = Path(tempfile.mkdtemp(prefix="keysync-app-", dir=args.temp_dir))
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the server as Ctrl-C does, so the scratch folder goes too
    os.environ["GRADIO_TEMP_DIR"] = str(root)  # read when gradio is imported: uploads land in the scratch folder
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr

        server = Server(models, root, device=args.device, max_seconds=args.max_seconds, segmenter=segmenter,
                        session_timeout=args.session_timeout)
        if segmenter:  # loaded now: a SAM 2 that does not load is said at the start, not at the first click's dub
            try:
                server.segmenter_model()
            except KeySyncError as err:
                if args.segmenter:
                    raise
                print(f"keysync app: no occluder clicks: {err}", file=sys.stderr)  # the cached default is broken: the page goes on without
                server.segmenter = None
        page = build_page(server)
        page.queue(max_size=args.queue_size, default_concurrency_limit=1)
        threading.Thread(target=server.sweep_forever, name="session-sweep", daemon=True).start()
        occluders = f"occluder clicks with SAM 2 from {segmenter}" if segmenter else "no occluder clicks (no SAM 2: --segmenter)"
        print(f"keysync app: serving on http://{args.host}:{args.port} (Ctrl-C stops it); {occluders}", file=sys.stderr)
        page.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=args.max_upload_mb * gr.FileSize.MB,
                    ssr_mode=False, show_error=False, quiet=True, footer_links=[])
    finally:
        shutil.rmtree(root, ignore_errors=True)
