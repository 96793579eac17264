"""Parity with the official implementation: every golden tensor in shared/fixtures/official-tiny.

The fixture weights are loaded through ``convert_checkpoints``, the same code ``keysync convert`` runs.
"""

import pytest
import torch
from safetensors.torch import load_file

from keysync.diffusion import Conditioning, Guidance, MaskedDenoiser, ays_sigmas, sample_euler
from keysync.models.convert import convert_checkpoints

from .conftest import OFFICIAL_TINY, require_fixtures

KINDS = ("keyframe", "interpolation")


@pytest.fixture(scope="module")
def model():
    require_fixtures()
    dirs = {k: OFFICIAL_TINY / f"{k}_tiny" for k in KINDS}
    return convert_checkpoints(
        dirs["keyframe"] / "state_dict.safetensors",
        dirs["interpolation"] / "state_dict.safetensors",
        official_configs=[dirs[k] / "config.json" for k in KINDS],
        log=lambda *_: None,
    )


@pytest.fixture
def one_thread():
    """Ten guided steps compound float rounding, and how torch splits its sums over threads changes it: on
    a 2-core Xeon the interpolation run drifted to 1.75e-4 from the golden on one step with 2 threads (the
    tolerance is 1.7e-4) and stayed within it on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fixture(kind, name):
    return load_file(OFFICIAL_TINY / f"{kind}_tiny" / f"{name}.safetensors")


def flat(video):
    """(B, C, T, h, w) -> (B*T, C, h, w), clip-major."""
    return video.transpose(1, 2).flatten(0, 1)


def assert_close(actual, expected, tol):
    assert actual.shape == expected.shape
    err = (actual - expected).abs().max().item()
    assert err <= tol, f"max abs error {err:.3g} > {tol:.1g}"


@pytest.mark.parametrize("kind", KINDS)
def test_conditioner(model, kind):
    f = fixture(kind, "conditioner")
    net = getattr(model, kind)
    with torch.no_grad():
        assert_close(net.embed_audio(f["in_audio_emb"]), f["c_crossattn"], 1e-5)
    assert_close(net.embed_frames(f["in_cond_frames"]), f["c_concat"], 1e-5)
    assert not f["uc_crossattn"].any() and not f["uc_concat"].any()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", "ab")
def test_unet_forward(model, kind, case):
    f = fixture(kind, "unet_forward")
    with torch.no_grad():
        out = getattr(model, kind).unet_forward(f[f"{case}_x"], f[f"{case}_timesteps"], f[f"{case}_context"])
    assert_close(out, f[f"{case}_out"], 1e-4)


def conditioning(f, prefix):
    return Conditioning(
        concat=f[f"{prefix}concat"], context=f[f"{prefix}crossattn"], known=flat(f[f"{prefix}gt"]),
        mask=flat(f[f"{prefix}masks"]),
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", "ab")
def test_denoiser(model, kind, case):
    f = fixture(kind, "denoiser_forward")
    net = getattr(model, kind)
    captured = {}

    def spy(x, c_noise, concat, context):
        captured["x"] = torch.cat([x, net.conditioning_frames(concat, context.shape[1])], dim=1)
        captured["t"] = c_noise
        return net(x, c_noise, concat, context)

    with torch.no_grad():
        out = MaskedDenoiser(spy)(f[f"{case}_x_noisy"], f[f"{case}_sigma"], conditioning(f, f"{case}_"))
    assert_close(captured["x"], f[f"{case}_unet_in_x"], 1e-5)
    assert_close(captured["t"], f[f"{case}_unet_in_timesteps"], 1e-6)
    assert_close(out, f[f"{case}_denoised"], 1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_sigmas(kind):
    require_fixtures()
    f = fixture(kind, "discretization")
    assert torch.equal(ays_sigmas(10), f["ays10_f64"])
    assert_close(ays_sigmas(15), f["ays15_f64"], 1e-12)
    assert torch.equal(ays_sigmas(10).float(), f["ays10_f32"])
    with pytest.raises(ValueError):
        ays_sigmas(9)


def sampling_inputs(model, kind):
    f = fixture(kind, "sampling")
    net = getattr(model, kind)
    with torch.no_grad():
        cond = Conditioning(
            concat=net.embed_frames(f["in_cond_frames"]), context=net.embed_audio(f["in_audio_emb"]),
            known=flat(f["in_gt"]), mask=flat(f["in_masks"]),
        )
    assert_close(cond.concat, f["c_concat"], 1e-5)
    assert_close(cond.context, f["c_crossattn"], 1e-5)
    return f, net, cond


@pytest.mark.parametrize("kind", KINDS)
def test_guider(model, kind):
    f, net, cond = sampling_inputs(model, kind)
    guidance = Guidance(audio=5.0, ref=2.0)
    x, sigma, stacked = guidance.stack(f["guider_x"], f["guider_sigma"], cond)
    assert_close(stacked.concat, f["guider_concat3"], 1e-5)
    assert_close(stacked.context, f["guider_crossattn3"], 1e-5)
    with torch.no_grad():
        denoised = MaskedDenoiser(net)(x, sigma, stacked)
    for name, part in zip(("base", "ref", "full"), denoised.chunk(3)):
        assert_close(part, f[f"guider_D_{name}"], 1e-4)
    assert_close(guidance.combine(denoised), f["guider_out"], 5e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_sampling(model, kind, one_thread):
    f, net, cond = sampling_inputs(model, kind)
    assert torch.equal(ays_sigmas(10)[:11].float(), f["sigma_per_step"])
    steps, denoised_steps = [], []

    def record(i, x, d):
        steps.append(x)
        denoised_steps.append(d)

    denoiser = MaskedDenoiser(net, clips_per_call=2)
    with torch.no_grad():
        final = sample_euler(
            lambda x, s, c: Guidance()(denoiser, x, s, c), f["noise"], cond, ays_sigmas(10), callback=record
        )
    for i, (x, expected) in enumerate(zip(steps, f["x_after_step"])):
        assert_close(x, expected, 1e-5 * expected.abs().max().item() + 1e-4)
    if kind == "keyframe":
        for d, expected in zip(denoised_steps, f["denoised_per_step"]):
            assert_close(d, expected, 5e-4)
    assert_close(final, f["final"], 5e-4)
    if kind == "interpolation":
        keyframes = f["in_cond_frames"]  # (B, 4, 2, h, w): [start, end]
        final = final.reshape(-1, 14, *final.shape[1:]).clone()
        final[:, 0], final[:, -1] = keyframes[:, :, 0], keyframes[:, :, 1]
        assert_close(final.flatten(0, 1), f["final_with_keyframes"], 5e-4)


@pytest.mark.parametrize("frames_per_call", [14, 1])
def test_vae_decode(model, frames_per_call):
    f = fixture("keyframe", "vae_decode")
    with torch.no_grad():
        out = model.vae.decode_frames(f["z"], frames_per_call=frames_per_call)
    assert_close(out, f[f"out_timesteps{frames_per_call}"], 1e-4)
