"""Conventions every stage shares, in one place (importing this module costs nothing)."""

SAMPLE_RATE = 16_000  # Hz: every waveform inside the model
MODEL_FPS = 25  # frames per second inside the model (video is resampled to it)
SAMPLES_PER_FRAME = SAMPLE_RATE // MODEL_FPS  # 640 audio samples per model frame
CLIP = 14  # frames per network call (and per interpolation segment)

# Network calls per clip per stage on the official schedule: its num_steps 10 is the 11-level AYS table.
OFFICIAL_STEPS = 11
STEPS_HELP = f"network calls per clip per stage (>= 1), replacing the --speed preset's ({OFFICIAL_STEPS} in quality, the official schedule)"
SPEEDS = ("quality", "fast", "fastest")  # keysync.diffusion.speed holds what each one does
SPEED_HELP = (
    "quality (default: the official schedule, 11 guided steps per stage), fast (4 interpolation steps, the last "
    "one unguided: 2.8x fewer network evaluations), or fastest (6x fewer)"
)
DEEP_CACHE_HELP = (
    "N > 1: the networks' deep levels run on one sampling step in N and the steps between reuse them "
    "(DeepCache); a reusing step costs about a third of a whole one at official size (default 1: off)"
)
DTYPES = ("float32", "float16", "bfloat16")  # what the networks compute in (--dtype)
ENCODERS = ("auto", "libx264", "h264_nvenc")  # H.264 encoders of the output: auto takes NVIDIA's hardware one where it opens, else x264
FP8_MODES = ("on", "emulate")  # keysync.models.fp8
FP8_HELP = (
    "FP8 matmuls in the sampling networks' linear layers: on (torchao's, on an NVIDIA GPU with FP8 tensor cores, "
    "with --dtype bfloat16; pip install 'keysync[fp8]') or emulate (their rounding on any device, no faster: to see "
    "their effect). Changes the output beyond float rounding (default: off)"
)
