"""Audio features for the two stages: speech encoders (HuBERT, WavLM) or weight-free log-mel."""

from ..constants import SAMPLE_RATE, SAMPLES_PER_FRAME
from .features import LogMelFeatures, SpeechEncoderFeatures, build_features, frame_windows, num_frames

__all__ = ["SAMPLES_PER_FRAME", "SAMPLE_RATE", "LogMelFeatures", "SpeechEncoderFeatures", "build_features", "frame_windows", "num_frames"]
