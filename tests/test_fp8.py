"""FP8 matmuls (``keysync.models.fp8``): the emulated rounding is round-to-nearest on the e4m3 grid with a
scale per row, it reaches exactly the layers the real path would swap, and the real path says in one line
what it needs where it cannot run."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from keysync.errors import KeySyncError
from keysync.models.fp8 import FP8, FP8_MAX, emulate_fp8, fp8_layers, round_rows_to_fp8
from keysync.models.model import shipped_model_dir
from keysync.pipeline.dub import KeySyncPipeline


def e4m3_grid() -> np.ndarray:
    """Every finite float8_e4m3fn value, sorted (from its 256 bit patterns)."""
    values = torch.arange(256, dtype=torch.uint8).view(FP8).float().numpy()
    return np.unique(values[np.isfinite(values)])


def test_rows_round_to_the_nearest_e4m3_value_of_their_own_scale():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((64, 48)) * rng.uniform(1e-3, 1e3, (64, 1))).float()
    x[5] = 0  # a row of zeros: no 0/0
    y = round_rows_to_fp8(x)
    grid = e4m3_grid()
    for row, out in zip(x.numpy(), y.numpy()):
        amax = np.abs(row).max()
        if amax == 0:
            assert not out.any()
            continue
        scale = np.float32(amax) / np.float32(FP8_MAX)
        scaled = row.astype(np.float32) / scale
        nearest = grid[np.abs(scaled[:, None] - grid[None, :]).argmin(axis=1)]  # ties: random floats have none
        np.testing.assert_allclose(out, nearest * scale, rtol=1e-6, atol=0)
        assert np.abs(out).max() == pytest.approx(amax, rel=1e-6)  # the largest value maps to 448 exactly


def test_emulation_rounds_weights_and_inputs_of_every_eligible_linear_layer():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(32, 48), torch.nn.SiLU(), torch.nn.Linear(48, 20), torch.nn.Linear(20, 16))
    plain = [layer.weight.detach().clone() for layer in net if isinstance(layer, torch.nn.Linear)]
    x = torch.randn(7, 32)
    assert fp8_layers(net) == [net[0]]  # 48 -> 20 and 20 -> 16 are not multiples of 16 both ways
    assert emulate_fp8(net) == 1
    with torch.no_grad():
        want = F.linear(round_rows_to_fp8(x), round_rows_to_fp8(plain[0]), net[0].bias)
        want = net[3](net[2](F.silu(want)))
        assert torch.equal(net[2].weight, plain[1]) and torch.equal(net[3].weight, plain[2])
        assert torch.equal(net(x), want)


def test_the_pipeline_emulates_fp8_in_both_networks_and_refuses_it_on_the_cpu():
    pipe = KeySyncPipeline.from_pretrained(shipped_model_dir())
    with pytest.raises(KeySyncError, match="--fp8 on needs an NVIDIA GPU with FP8 tensor cores"):
        pipe.fp8("on")
    with pytest.raises(KeySyncError, match="--fp8 maybe: choose one of on, emulate"):
        pipe.fp8("maybe")
    def parameters():
        return {f"{part}.{name}": p for part, module in pipe.model.components().items() for name, p in module.named_parameters()}

    before = {name: p.detach().clone() for name, p in parameters().items()}
    pipe.fp8("emulate")
    changed = {name for name, p in parameters().items() if not torch.equal(p, before[name])}
    eligible = {f"{stage}.{name}.weight" for stage in ("keyframe", "interpolation")
                for name, m in getattr(pipe.model, stage).named_modules() if m in fp8_layers(getattr(pipe.model, stage))}
    assert len(eligible) > 400 and changed == eligible  # the UNets' linear weights, nothing of the VAE
