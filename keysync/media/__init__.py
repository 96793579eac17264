"""Media I/O on PyAV: streaming video decode, 25 fps model-frame planning, 16 kHz audio, H.264 + AAC output.

Everything streams: a video is never held in memory whole, so memory does not grow with its length.
"""

from .audio import SAMPLE_RATE, SAMPLES_PER_FRAME, fit_audio_to_frames, load_audio
from .frames import MODEL_FPS, ModelFramePlan, plan_model_frames
from .video import Frame, VideoInfo, probe_video, read_frames
from .writer import VideoWriter

__all__ = [
    "MODEL_FPS",
    "SAMPLE_RATE",
    "SAMPLES_PER_FRAME",
    "Frame",
    "ModelFramePlan",
    "VideoInfo",
    "VideoWriter",
    "fit_audio_to_frames",
    "load_audio",
    "plan_model_frames",
    "probe_video",
    "read_frames",
]
