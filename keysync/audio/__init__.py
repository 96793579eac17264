"""Audio features for the two stages: speech encoders (HuBERT, WavLM) or weight-free log-mel."""

from .features import (
    FPS,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    LogMelFeatures,
    SpeechEncoderFeatures,
    build_features,
    frame_windows,
    num_frames,
)

__all__ = ["FPS", "SAMPLES_PER_FRAME", "SAMPLE_RATE", "LogMelFeatures", "SpeechEncoderFeatures", "build_features", "frame_windows", "num_frames"]
