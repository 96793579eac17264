"""Audio features: exactly two rows per 25 fps frame, aligned, and seamless across windows."""

import numpy as np
import pytest
import torch
from transformers import HubertConfig, HubertModel

from keysync.audio import SAMPLES_PER_FRAME, LogMelFeatures, SpeechEncoderFeatures, frame_windows, num_frames


@pytest.mark.parametrize("samples", [1, 639, 640, 641, 16000 * 3 + 123])
def test_logmel_layout(samples):
    feats = LogMelFeatures(n_mels=40)(np.zeros(samples, np.float32))
    assert feats.shape == (num_frames(samples), 2, 40)


def test_logmel_rows_are_aligned_to_frames():
    """A click inside video frame f changes rows of frame f (and its neighbours' edges), nothing far away."""
    wave = np.zeros(SAMPLES_PER_FRAME * 20, np.float32)
    f = 11
    wave[f * SAMPLES_PER_FRAME + 200] = 1.0  # centre of row 2f
    feats = LogMelFeatures()(wave).flatten(0, 1).mean(-1)
    assert int(feats.argmax()) == 2 * f
    assert torch.all(feats[: 2 * f - 1] == feats[0]) and torch.all(feats[2 * f + 2 :] == feats[0])


def test_frame_windows_gather_neighbours_in_time_order_and_repeat_the_edges():
    feats = torch.arange(5.0)[:, None, None].expand(5, 2, 3)  # frame f's rows hold f
    windows = frame_windows(feats, 2)
    assert windows.shape == (5, 10, 3)
    assert windows[2, ::2, 0].tolist() == [0, 1, 2, 3, 4]
    assert windows[0, ::2, 0].tolist() == [0, 0, 0, 1, 2] and windows[4, ::2, 0].tolist() == [2, 3, 4, 4, 4]
    assert torch.equal(frame_windows(feats, 0), feats)


def local_encoder():
    """A random HuBERT whose receptive field is local (layer norm, short positional conv, no attention),
    so windowed and whole-file features must agree exactly when the windows are aligned."""
    torch.manual_seed(0)
    cfg = HubertConfig(
        hidden_size=32, num_hidden_layers=0, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, feat_extract_norm="layer",
    )
    return HubertModel(cfg)


def test_speech_encoder_windows_do_not_drift():
    wave = np.random.default_rng(0).standard_normal(16000 * 3 + 123).astype(np.float32)
    model = local_encoder()
    whole = SpeechEncoderFeatures(model, normalize=True, window_s=100)(wave)
    windowed = SpeechEncoderFeatures(model, normalize=True, window_s=0.4, context_s=0.4)(wave)
    assert whole.shape == (num_frames(len(wave)), 2, 32)
    assert torch.allclose(whole, windowed, atol=1e-4)
    # a one-row shift at a join would be far outside that tolerance
    assert (whole[1:] - whole[:-1]).abs().max() > 0.1


def test_speech_encoder_pads_to_requested_frames():
    feats = SpeechEncoderFeatures(local_encoder(), normalize=False)(np.zeros(1000, np.float32), frames=14)
    assert feats.shape == (14, 2, 32)


def test_random_speech_encoders_need_no_download_and_leave_the_callers_random_stream():
    """``--random-weights`` with the official audio spec builds HuBERT-base and WavLM-Base+ shapes offline
    (768 values per row, as the official networks expect), the same weights every time, and draws them
    without moving the caller's random numbers."""
    from keysync.audio import build_features
    from keysync.models.presets import preset

    specs = preset("official")["audio"]
    wave = np.random.default_rng(0).standard_normal(SAMPLES_PER_FRAME * 5).astype(np.float32)
    torch.manual_seed(1)
    state = torch.get_rng_state()
    rows = {}
    for stage, spec in specs.items():
        features = build_features(spec, random_weights=True)
        assert features.name == spec["encoder"] and features.dim == 768
        rows[stage] = features(wave)
        assert rows[stage].shape == (5, 2, 768)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(build_features(specs["keyframe"], random_weights=True)(wave), rows["keyframe"])
    assert not torch.equal(rows["keyframe"], rows["interpolation"])
