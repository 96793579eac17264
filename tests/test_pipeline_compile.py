"""``KeySyncPipeline.compile`` / ``keysync dub --compile``: the networks' repeated blocks go through
``torch.compile`` (regional, static shapes, no graph breaks) and the dub is the one the plain networks make.

The test compiles with dynamo's "eager" backend: the same capture of each block into one graph (or an
error, as ``fullgraph`` is set) without the minutes of C++ code generation that inductor takes on a CPU.
Inductor's run, with its timings, is ``benchmarks/compile_check.py``'s (benchmarks/results/compile.md), on
the shipped small model too, whose three UNet levels give a block class more input shapes than dynamo's
default limit of 8 graphs (``KeySyncNet.RECOMPILE_LIMIT``); tracing that many with this backend takes
about 50 s, too long for the suite, so this test runs the one-level micro model."""

import numpy as np

from keysync.models.network import KeySyncNet
from keysync.pipeline.dub import KeySyncPipeline

from .faces_media_clips import astronaut, moving_frames, tone
from .micro import micro_model


def test_compiled_blocks_dub_what_the_plain_networks_dub():
    import torch._dynamo

    torch._dynamo.reset()
    frames = np.stack(list(moving_frames(astronaut(), 192, 144, 14, photo_height=130)))
    pipe = KeySyncPipeline(micro_model(audio_window=1))
    plain = np.stack(list(pipe(frames, tone(0.56), fps=25, progress=False, steps=1).frames))
    try:
        pipe.compile(backend="eager")
        nets = (pipe.model.keyframe, pipe.model.interpolation)
        blocks = [m for net in nets for m in net.unet.modules() if type(m).__name__ in KeySyncNet.COMPILED_BLOCKS]
        assert len(blocks) == 2 * 13  # per network: 7 ResNet and 6 transformer blocks (one level and the middle)
        assert all(m._compiled_call_impl is not None for m in blocks)
        compiled = np.stack(list(pipe(frames, tone(0.56), fps=25, progress=False, steps=1).frames))
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 2  # the blocks ran compiled
    finally:
        torch._dynamo.reset()
    diff = np.abs(compiled.astype(int) - plain)
    assert diff.max() <= 1 and (diff > 0).mean() <= 0.01  # float rounding at most (see test_pipeline_default_output)


def test_channels_last_networks_dub_what_the_default_layout_dubs():
    """``KeySyncPipeline.channels_last``: every 2-D convolution's weight in both networks and the VAE is
    NHWC, the convolutions' outputs follow (a convolution's output inside the UNet is channels-last), and
    the dub moves by float rounding at most."""
    import torch

    frames = np.stack(list(moving_frames(astronaut(), 192, 144, 14, photo_height=130)))
    pipe = KeySyncPipeline(micro_model(audio_window=1))
    plain = np.stack(list(pipe(frames, tone(0.56), fps=25, progress=False, steps=1).frames))
    pipe.channels_last()
    nets = (pipe.model.keyframe, pipe.model.interpolation, pipe.model.vae)
    weights = [m.weight for net in nets for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    assert not any(w.is_contiguous() for w in weights if w.shape[2:] == (3, 3))  # 1x1 kernels are both layouts at once
    made = []
    conv = next(m for m in pipe.model.interpolation.unet.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    handle = conv.register_forward_hook(lambda module, inputs, output: made.append(output.is_contiguous(memory_format=torch.channels_last)))
    try:
        nhwc = np.stack(list(pipe(frames, tone(0.56), fps=25, progress=False, steps=1).frames))
    finally:
        handle.remove()
    assert made and all(made)
    diff = np.abs(nhwc.astype(int) - plain)
    assert diff.max() <= 1 and (diff > 0).mean() <= 0.01  # float rounding at most (see test_pipeline_default_output)
