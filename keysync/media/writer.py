"""Streaming H.264 + AAC writer: frames go to the encoder as they come, the file appears only when complete."""

from __future__ import annotations

import functools
import os
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from ..constants import ENCODERS, SAMPLE_RATE
from ..errors import KeySyncError
from ..files import temp_file

AUDIO_LEAD = 0.5  # seconds of audio encoded ahead of the video, so the file is interleaved


@functools.cache
def nvenc_opens() -> bool:
    """Whether FFmpeg's NVIDIA H.264 encoder opens on this machine. PyAV's wheels include it; it needs an
    NVIDIA GPU and driver, and without them opening it fails at once."""
    if "h264_nvenc" not in av.codecs_available:
        return False
    context = av.CodecContext.create("h264_nvenc", "w")
    context.width, context.height, context.pix_fmt, context.time_base = 256, 256, "yuv420p", Fraction(1, 25)
    try:
        context.open()
    except av.FFmpegError:
        return False
    return True


def choose_encoder(encoder: str = "auto", crf: int = 17) -> str:
    """The H.264 encoder to use: ``auto`` takes h264_nvenc where it opens (the GPU encodes while the CPU
    decodes, tracks and pastes), except for lossless output (``crf`` 0: x264's lossless mode), else libx264."""
    if encoder not in ENCODERS:
        raise KeySyncError(f"encoder {encoder!r}: choose one of {', '.join(ENCODERS)}")
    if encoder == "auto":
        return "h264_nvenc" if crf > 0 and nvenc_opens() else "libx264"
    if encoder == "h264_nvenc" and crf == 0:
        raise KeySyncError("--crf 0 (lossless) is x264's mode; use --encoder libx264 or auto for it")
    if encoder == "h264_nvenc" and not nvenc_opens():
        raise KeySyncError("the NVIDIA H.264 encoder (h264_nvenc) does not open on this machine (it needs an NVIDIA GPU and driver); use --encoder libx264 or auto")
    return encoder


def check_output_path(output: str | Path, inputs=(), overwrite: bool = False, folder: bool = False) -> Path:
    """Before any work: refuse to write over an input, over an existing output unless ``overwrite``, onto
    a folder (or, with ``folder``, a file), or into a folder that is missing (for ``folder``, whose nearest
    existing ancestor) or cannot be written to: a test file is made and removed, as permission bits alone
    do not tell (root ignores them; a read-only mount does not)."""
    import tempfile

    output = Path(output)
    for item in inputs:
        if item is not None and Path(item).exists() and output.exists() and os.path.samefile(output, item):
            raise KeySyncError(f"{output} is also an input; choose another output path")
    if output.is_dir() and not folder:
        raise KeySyncError(f"{output} is a folder; give the path of a file to write (one inside it, for example)")
    if output.exists() and folder and not output.is_dir():
        raise KeySyncError(f"{output} is a file; give the path of a folder to write")
    if output.exists() and not overwrite:
        raise KeySyncError(f"{output} already exists; choose another output path or pass --overwrite")
    parent = output.absolute().parent
    while folder and not parent.exists() and parent != parent.parent:  # folder writers create missing parents
        parent = parent.parent
    if not parent.exists():
        raise KeySyncError(f"folder {parent} does not exist; create it first")
    if not parent.is_dir():
        raise KeySyncError(f"{parent} is a file, not a folder; give an output path inside a folder")
    try:
        tempfile.TemporaryFile(dir=parent).close()
    except OSError as err:
        raise KeySyncError(f"cannot write in folder {parent} ({err.strerror}); choose a folder you can write to") from None
    return output


class VideoWriter:
    """Encode RGB frames to H.264 (yuv420p; yuv444p for odd sizes, which 4:2:0 cannot hold) plus AAC audio.

    Frames are written with their own timestamps (seconds), so a variable-rate input keeps its timing.
    The output is first written to a hidden temporary file next to ``path`` and moved into place by
    ``close()``; on an exception inside ``with`` (or ``abort()``) the temporary file is deleted and
    nothing is left behind.

    ``audio``: float32 (samples,) or (channels, samples) at ``audio_rate``, sample 0 at time 0.
    ``crf``: x264 quality (0 = lossless, 18 = visually lossless, 23 = x264's default). ``preset``: x264's
    speed; veryfast at crf 17 encodes 1080p about 2x as fast as medium at crf 18, in a smaller file, 0.4 dB
    lower PSNR at ~44 dB (benchmarks/results/speed_encoders.md). ``encoder``: ``ENCODERS``
    (``choose_encoder``); h264_nvenc runs at constant quality ``crf`` (its ``cq``) with its p4 preset.
    x264 runs ``cpu-independent`` (its macroblock-tree rate control in plain C, not its SIMD code): without
    it, the same frames made different files from one run to the next in one process (10 encodes of a
    16-frame moving-face clip with sound: 9 different files; two files of an 8-frame dubbed clip decoded
    0.5 levels apart on average); with it, one file, at the same speed (1080p at 60-62 fps against 60-63 on 2 cores) and 0.3 % larger.

    ``template``: an opened video stream whose encoded packets are copied by ``write_packet`` instead of
    encoding frames (``join_videos``).
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        rate: Fraction | float = 25,
        time_base: Fraction | None = None,
        audio: np.ndarray | None = None,
        audio_rate: int = SAMPLE_RATE,
        crf: int = 17,
        preset: str = "veryfast",
        overwrite: bool = False,
        template=None,
        encoder: str = "libx264",
    ):
        self.path = check_output_path(path, overwrite=overwrite)
        self.encoder = choose_encoder(encoder, crf) if template is None else template.codec_context.name
        self.rate = Fraction(rate).limit_denominator(1001000)
        self.time_base = Fraction(time_base) if time_base else 1 / (self.rate * 1000)
        self._tmp = temp_file(self.path, suffix=f".partial{self.path.suffix}")
        tmp = str(self._tmp)
        self._count = 0
        self._last_pts = None
        self._closed = False
        try:
            self._container = av.open(tmp, mode="w", format=_format_for(self.path))
            if template is not None:
                stream = self._container.add_stream_from_template(template)
            else:
                stream = self._container.add_stream(self.encoder, rate=self.rate)
                stream.width, stream.height = int(width), int(height)
                stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
                stream.codec_context.time_base = self.time_base
                stream.options = ({"crf": str(int(crf)), "preset": preset, "x264-params": "cpu-independent=1"}  # reproducible: see above
                                  if self.encoder == "libx264" else {"rc": "vbr", "cq": str(int(crf)), "preset": "p4"})
            stream.time_base = self.time_base
            self._video = stream
            self._audio_stream = None
            if audio is not None:
                audio = np.asarray(audio, dtype=np.float32)
                self._audio = audio[None] if audio.ndim == 1 else audio
                layout = "mono" if self._audio.shape[0] == 1 else "stereo"
                if self._audio.shape[0] > 2:
                    raise ValueError("audio must be mono or stereo")
                self._audio_stream = self._container.add_stream("aac", rate=int(audio_rate), layout=layout)
                self._audio_rate = int(audio_rate)
                self._audio_pos = 0
        except BaseException:
            self.abort()
            raise

    def write(self, image: np.ndarray, time: float | None = None) -> None:
        """Encode one (H, W, 3) uint8 RGB frame shown at ``time`` seconds (default: frame count / rate)."""
        if time is None:
            time = float(self._count / self.rate)
        pts = int(round(time / self.time_base))
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        frame = self._video_frame(np.ascontiguousarray(image))
        frame.pts = pts
        frame.time_base = self.time_base
        for packet in self._video.encode(frame):
            self._container.mux(packet)
        self._count += 1
        self._write_audio_until(time + AUDIO_LEAD)

    def _video_frame(self, image: np.ndarray) -> av.VideoFrame:
        """The frame in the stream's pixel format. For yuv420p OpenCV converts (BT.601, video range, as
        FFmpeg's scaler does; chroma averaged over 2x2 pixels): 3 ms at 1080p against swscale's 13 ms,
        which ran on the writing thread; the round trip to RGB is as close (PSNR 49.3 dB against 49.1)."""
        if self._video.pix_fmt == "yuv420p":
            return av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420), format="yuv420p")
        return av.VideoFrame.from_ndarray(image, format="rgb24")

    def write_packet(self, packet: av.Packet) -> None:
        """Copy one encoded packet of the ``template`` stream's kind (timestamps in its own time base)."""
        packet.stream = self._video
        self._container.mux(packet)
        self._count += 1
        if packet.pts is not None:
            self._write_audio_until(float(packet.pts * packet.time_base) + AUDIO_LEAD)

    def _write_audio_until(self, time: float | None) -> None:
        if self._audio_stream is None:
            return
        end = self._audio.shape[1] if time is None else min(self._audio.shape[1], int(time * self._audio_rate))
        if end <= self._audio_pos:
            return
        layout = "mono" if self._audio.shape[0] == 1 else "stereo"
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(self._audio[:, self._audio_pos:end]), format="fltp", layout=layout)
        frame.sample_rate = self._audio_rate
        frame.pts = self._audio_pos
        frame.time_base = Fraction(1, self._audio_rate)
        for packet in self._audio_stream.encode(frame):
            self._container.mux(packet)
        self._audio_pos = end

    def close(self) -> Path:
        """Flush the encoders and move the finished file into place."""
        if self._closed:
            return self.path
        try:
            if self._count == 0:
                raise KeySyncError(f"no frames were written to {self.path}")
            if self._video.codec_context.is_encoder:
                for packet in self._video.encode():
                    self._container.mux(packet)
            if self._audio_stream is not None:
                self._write_audio_until(None)
                for packet in self._audio_stream.encode():
                    self._container.mux(packet)
            self._container.close()
            os.replace(self._tmp, self.path)
            self._closed = True
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Stop and delete the temporary file; the output path is left untouched."""
        self._closed = True
        container = getattr(self, "_container", None)
        if container is not None:
            try:
                container.close()
            except av.FFmpegError:
                pass
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _format_for(path: Path) -> str:
    formats = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
    try:
        return formats[path.suffix.lower()]
    except KeyError:
        raise KeySyncError(f"{path}: unsupported output type {path.suffix!r}; use .mp4, .mov or .mkv") from None


def join_videos(pieces: list[str | Path], output: str | Path, audio: np.ndarray | None = None, audio_rate: int = SAMPLE_RATE,
                overwrite: bool = False) -> Path:
    """Join video-only files that follow one another in time (written by ``VideoWriter`` with the same size
    and settings) by copying their H.264 packets, with ``audio`` (sample 0 at time 0) under the whole: no
    frame is encoded again, so the join costs no quality and little time."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        inputs = [stack.enter_context(av.open(str(p))) for p in pieces]
        streams = [c.streams.video[0] for c in inputs]
        first = streams[0].codec_context
        for path, stream in zip(pieces, streams):
            context = stream.codec_context
            if (context.name, context.width, context.height, context.pix_fmt, bytes(context.extradata or b"")) != (
                    first.name, first.width, first.height, first.pix_fmt, bytes(first.extradata or b"")):
                raise KeySyncError(f"{path} was encoded with other settings than {pieces[0]}; pieces to join must share them")
        with VideoWriter(output, first.width, first.height, rate=streams[0].average_rate or 25, time_base=streams[0].time_base,
                         audio=audio, audio_rate=audio_rate, overwrite=overwrite, template=streams[0]) as writer:
            for container, stream in zip(inputs, streams):
                for packet in container.demux(stream):
                    if packet.size:  # the demuxer's empty end-of-stream packet
                        writer.write_packet(packet)
    return Path(output)
