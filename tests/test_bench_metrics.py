"""Benchmark metric definitions on hand-made series and frames."""

import numpy as np
import pytest

from keysync.bench import metrics as M


def test_silent_frames_by_rms():
    audio = np.zeros(10 * 640, np.float32)
    audio[3 * 640 : 5 * 640] = 0.1 * np.sin(np.arange(2 * 640))
    audio += 1e-4  # room tone far below the threshold
    assert M.silent_frames(audio, 10, margin=0).tolist() == [True] * 3 + [False] * 2 + [True] * 5
    # by default a silent frame is also 3 frames (120 ms) from speech: gaps between words are not silences
    assert M.silent_frames(audio, 10).tolist() == [False] * 8 + [True] * 2
    long = np.concatenate([np.zeros(640 * 20, np.float32), audio])  # 20 silent frames, then the same
    assert M.silent_frames(long, 30).tolist() == [True] * 20 + [False] * 8 + [True] * 2
    assert M.silent_frames(audio[:100], 3).all()  # short audio is padded with silence


def test_speaking_window_bridges_closures_and_lipleak():
    jaw = np.full(40, 0.03)
    jaw[10:30] = 0.5
    jaw[18:20] = 0.0  # a /p/ inside speech
    speaking = M.speaking_frames(jaw, 0.15)
    assert speaking[7:33].all() and not speaking[:7].any() and not speaking[33:].any()
    silent = np.ones(40, bool)
    assert M.lipleak(jaw, silent, 0.15) == speaking.mean()
    assert M.lipleak(np.full(40, 0.03), silent, 0.15) == 0.0
    assert np.isnan(M.lipleak(jaw, np.zeros(40, bool), 0.15))
    valid = np.zeros(40, bool)
    valid[:5] = True
    assert M.lipleak(jaw, silent, 0.15, valid) == 0.0


def test_correlations_and_errors():
    t = np.linspace(0, 6, 60)
    a = np.sin(t)
    assert M.pearson(a, 2 * a + 1) > 0.999
    assert M.pearson(a, -a) < -0.999
    assert np.isnan(M.pearson(a, np.zeros(60)))
    rng = np.random.default_rng(0)
    source, other = rng.normal(size=60), rng.normal(size=60)
    target = 0.6 * source + 0.8 * other  # new speech whose jaw correlates with the source's by chance
    assert M.pearson(target, source) > 0.4 and abs(M.partial_pearson(target, source, target)) < 1e-9  # perfect dub
    leaky = target + 0.7 * source + 0.3 * rng.normal(size=60)
    assert M.partial_pearson(leaky, source, target) > 0.8  # what follows the source beyond the target
    assert M.partial_pearson(a, -a, np.zeros(60)) == M.pearson(a, -a)  # silence: plain correlation
    assert abs(M.mean_abs(a, a + 0.1) - 0.1) < 1e-9
    assert M.mouth_jitter(np.linspace(0, 1, 20)) < 1e-9
    assert M.mouth_jitter(np.tile([0.0, 1.0], 10)) == 2.0


def test_identity_regions_and_images():
    lm = np.zeros((1, 68, 2))
    lm[0, :, 0] = np.linspace(10, 50, 68)
    lm[0, :, 1] = 30
    lm[0, 28, 1] = 20
    lm[0, 17:27, 1] = 10
    box = M.regenerated_box(lm, 64, 64)
    assert box[0, 20:, 10:51].all() and not box[0, :20].any() and not box[0, :, :10].any()
    upper = M.upper_face_box(lm, 64, 64)
    assert upper[0, 7:20, 10:51].all() and not upper[0, 20:].any()
    rng = np.random.default_rng(0)
    img = np.broadcast_to(np.linspace(60, 180, 64, dtype=np.uint8)[None, None, :, None], (2, 64, 64, 3)).copy()
    everywhere = np.ones((2, 64, 64), bool)
    assert M.psnr(img, img, everywhere) == M.PSNR_CAP
    assert abs(M.ssim(img, img, everywhere) - 1) < 1e-9
    noisy = np.clip(img.astype(int) + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
    assert 20 < M.psnr(img, noisy, everywhere) < 40 and M.ssim(img, noisy, everywhere) < 0.95


def test_psnr_is_scikit_images_on_the_regions_pixels():
    """``psnr`` sums squared errors in integers; scikit-image on the region's pixels (float64) gets the same
    mean (a sum of exact integers either way), so the two agree to the last bits of one log10."""
    from skimage.metrics import peak_signal_noise_ratio

    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (3, 40, 50, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-90, 91, a.shape), 0, 255).astype(np.uint8)  # errors of both signs, up to 90
    region = rng.random(a.shape[:3]) < 0.3
    assert M.psnr(a, b, region) == pytest.approx(peak_signal_noise_ratio(b[region], a[region], data_range=255), rel=1e-14)
    assert M.psnr(a, b) == pytest.approx(peak_signal_noise_ratio(b, a, data_range=255), rel=1e-14)
    assert M.psnr(a, a, region) == M.PSNR_CAP and np.isnan(M.psnr(a, b, np.zeros(a.shape[:3], bool)))


def test_colour_shift_measures_tint_not_texture():
    rng = np.random.default_rng(1)
    src = rng.integers(90, 170, (3, 32, 32, 3)).astype(np.uint8)
    region = np.zeros((3, 32, 32), bool)
    region[:, 16:, 8:24] = True
    assert M.colour_shift(src, src, region) == 0.0
    shuffled = src.copy()
    for t in range(3):  # the region's pixels moved around: same colours, other texture
        shuffled[t][region[t]] = rng.permutation(src[t][region[t]])
    assert M.colour_shift(shuffled, src, region) < 1e-3
    tinted = src.copy()
    tinted[region] = np.clip(tinted[region].astype(int) + [8, 8, -12], 0, 255).astype(np.uint8)  # yellower
    assert 5 < M.colour_shift(tinted, src, region) < 30
    outside = src.copy()
    outside[:, :16] = 0  # changes outside the region do not count
    assert M.colour_shift(outside, src, region) == 0.0
    assert np.isnan(M.colour_shift(src, src, np.zeros_like(region)))


def test_edges_and_occluders():
    src = np.zeros((3, 32, 32, 3), np.uint8)
    region = np.zeros((3, 32, 32), bool)
    region[:, 16:, 8:24] = True
    assert M.edge_jitter(src, src, region) == 0.0
    flicker = src.copy()
    flicker[1, 14:18] = 40  # the seam of frame 1 differs
    assert M.edge_jitter(flicker, src, region) > 1.0
    occ = np.zeros((3, 32, 32), np.uint8)
    assert np.isnan(M.occluder_error(src, src, occ))
    occ[:, :4, :4] = 1
    out = src.copy()
    out[:, :4, :4] = 10
    assert M.occluder_error(out, src, occ) == 10.0


def test_readable_frames_and_mouth_aspect_ratio():
    lm = np.zeros((2, 68, 2))
    ang = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    lm[:, 48:60] = np.stack([16 + 6 * np.cos(ang), 16 + 3 * np.sin(ang)], 1)
    lm[:, 60:68] = np.stack([16 + 4 * np.cos(ang[:8] * 12 / 8), 16 + 2 * np.sin(ang[:8] * 12 / 8)], 1)
    occ = np.zeros((2, 32, 32), np.uint8)
    occ[1, 10:22, 8:24] = 1
    assert M.readable_frames(lm, occ).tolist() == [True, False]
    closed = lm[0].copy()
    closed[60:68, 1] = 16
    opened = lm[0].copy()
    opened[[61, 62, 63], 1] = 14
    opened[[65, 66, 67], 1] = 20
    mar = M.mouth_aspect_ratio(np.stack([closed, opened]))
    assert mar[0] < 1e-9 and mar[1] > M.SPEAKING_MAR


def test_ssim_maps_are_each_frame_s_map_in_order():
    """The maps are computed frame by frame in threads: each must be its own frame's, in frame order."""
    from keysync.eval.psnr_ssim import ssim_map

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (5, 24, 32, 3), dtype=np.uint8)
    b = np.stack([np.clip(f.astype(int) + rng.integers(-8 * k, 8 * k + 1, f.shape), 0, 255).astype(np.uint8) for k, f in enumerate(a)])
    maps = M.ssim_maps(a, b)
    assert maps.shape == (5, 24, 32) and maps.dtype == np.float32
    for k in range(5):
        assert np.array_equal(maps[k], ssim_map(a[k], b[k])[1].astype(np.float32))
    assert np.all(np.diff(maps.mean(axis=(1, 2))) < 0)  # more noise on each later frame: lower SSIM
