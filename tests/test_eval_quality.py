"""FID, FVD, CSIM and LPIPS of ``keysync eval`` against independent computations, with weights made on the fly
(random, seeded; real ones cannot be had here) and saved in each published file's format and key names:
torch pickles for pytorch-fid's Inception, torchvision's AlexNet and lpips' linear layers, a TorchScript
module with the I3D's call signature, an ONNX model with ArcFace's input and output.

What each test recomputes by its own route: the Fréchet distance in the span of the features with scipy's
``sqrtm`` (pytorch-fid's formula) and in closed form for Gaussians; the Inception and LPIPS forwards line by
line from the state dicts with ``torch.nn.functional``; FVD's windows from the frames by numpy; CSIM with
insightface's own ``norm_crop`` and ``ArcFaceONNX`` where they import (scikit-image and onnxruntime otherwise)
and numpy's cosine. Then the weights' loading: missing files, a pickle that would run code, the CLI's
flags, YAML file and ``--metrics``.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from keysync.cli import main
from keysync.errors import KeySyncError
from keysync.eval.weights import WEIGHTS

from .faces_media_clips import astronaut, moving_frames, tone, write_clip

# --- helpers: the independent computations ---------------------------------------------------------------


def reference_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """pytorch-fid's ``calculate_frechet_distance`` on ``np.cov`` statistics, its ``sqrtm`` taken in the span Q
    of the centred features (S1 S2 = Q (Q'S1Q)(Q'S2Q) Q', so the trace of its root is that of the small
    product's), which keeps scipy's matrix square root small."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    q, _ = np.linalg.qr(np.concatenate([a - mu1, b - mu2]).T)
    with warnings.catch_warnings():  # singular when the sets are smaller than the span, as in pytorch-fid
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm((q.T @ s1 @ q) @ (q.T @ s2 @ q))
    assert np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


def _frames(count: int, width: int, height: int, seed: int = 0, noise: int = 0) -> np.ndarray:
    frames = np.stack(list(moving_frames(astronaut(), width, height, count, photo_height=height)))
    if noise:
        rng = np.random.default_rng(seed)
        frames = np.clip(frames.astype(np.int16) + rng.integers(-noise, noise + 1, frames.shape), 0, 255).astype(np.uint8)
    return frames


# --- Fréchet distance --------------------------------------------------------------------------------------


def test_frechet_distance_matches_the_closed_form_and_scipy():
    """``frechet_distance`` (pytorch-fid's, with sqrtm) against the closed form for Gaussians with diagonal
    covariances, ||mu1 - mu2||^2 + sum (sqrt a_i - sqrt b_i)^2, and against sqrt(S1) S2 sqrt(S1)'s
    eigenvalues for full covariances; ``frechet_distance_of_features`` on fewer samples than dimensions (its
    singular-value route) and on more (sqrtm) against the reference above."""
    from keysync.eval.fid import frechet_distance, frechet_distance_of_features

    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    a, b = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    closed = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(closed, rel=1e-10, abs=1e-12)
    assert frechet_distance(mu1, np.diag(a), mu1, np.diag(a)) == pytest.approx(0, abs=1e-9)

    x, y = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = x @ x.T + 0.1 * np.eye(6), y @ y.T + 0.1 * np.eye(6)
    w, v = np.linalg.eigh(s1)
    root1 = v @ np.diag(np.sqrt(w)) @ v.T
    trace_sqrt = np.sqrt(np.linalg.eigvalsh(root1 @ s2 @ root1)).sum()
    expected = np.trace(s1) + np.trace(s2) - 2 * trace_sqrt  # equal means
    assert frechet_distance(np.zeros(6), s1, np.zeros(6), s2) == pytest.approx(expected, rel=1e-9)

    few_a, few_b = rng.normal(size=(5, 40)), rng.normal(1.0, 2.0, size=(7, 40))  # fewer samples than dimensions
    assert frechet_distance_of_features(few_a, few_b) == pytest.approx(reference_frechet(few_a, few_b), rel=1e-7)
    assert frechet_distance_of_features(few_a, few_a) == pytest.approx(0, abs=1e-9)
    many_a, many_b = rng.normal(size=(60, 8)), rng.normal(0.5, 1.5, size=(50, 8))
    assert frechet_distance_of_features(many_a, many_b) == pytest.approx(reference_frechet(many_a, many_b), rel=1e-7)
    assert np.isnan(frechet_distance_of_features(few_a[:1], few_b))


# --- FID: the Inception --------------------------------------------------------------------------------------

# torchvision's Inception3 without AuxLogits, as pytorch-fid's file names it: each block's convolutions
A = ["branch1x1", "branch5x5_1", "branch5x5_2", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3", "branch_pool"]
B = ["branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"]
C = ["branch1x1", *(f"branch7x7_{k}" for k in (1, 2, 3)), *(f"branch7x7dbl_{k}" for k in (1, 2, 3, 4, 5)), "branch_pool"]
D = ["branch3x3_1", "branch3x3_2", *(f"branch7x7x3_{k}" for k in (1, 2, 3, 4))]
E = ["branch1x1", "branch3x3_1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3a",
     "branch3x3dbl_3b", "branch_pool"]
INCEPTION_CONVS = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                   *(f"Mixed_{m}.{c}" for m, blk in (("5b", A), ("5c", A), ("5d", A), ("6a", B), ("6b", C), ("6c", C),
                                                     ("6d", C), ("6e", C), ("7a", D), ("7b", E), ("7c", E)) for c in blk)]


def _inception_weights(path: Path) -> dict:
    """Random FID-Inception weights (He-scaled, so features neither vanish nor explode), saved as a legacy
    torch pickle of a state dict, as pytorch-fid's file is; without BatchNorm's counters, which it may lack."""
    from keysync.eval.fid import FIDInceptionV3

    g = torch.Generator().manual_seed(0)
    state = {}
    for key, value in FIDInceptionV3().state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.endswith("conv.weight"):
            value = torch.randn(value.shape, generator=g) * (2 / value[0].numel()) ** 0.5
        elif key.endswith(("running_var", "bn.weight")):
            value = torch.rand(value.shape, generator=g) + 0.5
        else:
            value = torch.randn(value.shape, generator=g) * 0.1
        state[key] = value
    torch.save(state, path, _use_new_zipfile_serialization=False)
    return state


def _inception_by_hand(sd: dict, x: torch.Tensor) -> np.ndarray:
    """The FID Inception's pool features of (N, 3, H, W) input in [-1, 1], line by line from the state dict."""

    def conv(name, x, stride=1, same=True):
        w = sd[f"{name}.conv.weight"]
        x = F.conv2d(x, w, stride=stride, padding=(w.shape[2] // 2, w.shape[3] // 2) if same else 0)
        return F.relu(F.batch_norm(x, sd[f"{name}.bn.running_mean"], sd[f"{name}.bn.running_var"], sd[f"{name}.bn.weight"],
                                   sd[f"{name}.bn.bias"], False, 0.0, 0.001))

    def avg(x):
        return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)

    def a(p, x):
        return torch.cat([conv(f"{p}.branch1x1", x), conv(f"{p}.branch5x5_2", conv(f"{p}.branch5x5_1", x)),
                          conv(f"{p}.branch3x3dbl_3", conv(f"{p}.branch3x3dbl_2", conv(f"{p}.branch3x3dbl_1", x))),
                          conv(f"{p}.branch_pool", avg(x))], 1)

    def c(p, x):
        seven = conv(f"{p}.branch7x7_3", conv(f"{p}.branch7x7_2", conv(f"{p}.branch7x7_1", x)))
        dbl = x
        for k in range(1, 6):
            dbl = conv(f"{p}.branch7x7dbl_{k}", dbl)
        return torch.cat([conv(f"{p}.branch1x1", x), seven, dbl, conv(f"{p}.branch_pool", avg(x))], 1)

    def e(p, x, pool):
        three, dbl = conv(f"{p}.branch3x3_1", x), conv(f"{p}.branch3x3dbl_2", conv(f"{p}.branch3x3dbl_1", x))
        return torch.cat([conv(f"{p}.branch1x1", x), conv(f"{p}.branch3x3_2a", three), conv(f"{p}.branch3x3_2b", three),
                          conv(f"{p}.branch3x3dbl_3a", dbl), conv(f"{p}.branch3x3dbl_3b", dbl), conv(f"{p}.branch_pool", pool(x))], 1)

    with torch.no_grad():
        x = conv("Conv2d_2b_3x3", conv("Conv2d_2a_3x3", conv("Conv2d_1a_3x3", x, 2, False), 1, False))
        x = F.max_pool2d(conv("Conv2d_4a_3x3", conv("Conv2d_3b_1x1", F.max_pool2d(x, 3, 2)), 1, False), 3, 2)
        x = a("Mixed_5d", a("Mixed_5c", a("Mixed_5b", x)))
        x = torch.cat([conv("Mixed_6a.branch3x3", x, 2, False),
                       conv("Mixed_6a.branch3x3dbl_3", conv("Mixed_6a.branch3x3dbl_2", conv("Mixed_6a.branch3x3dbl_1", x)), 2, False),
                       F.max_pool2d(x, 3, 2)], 1)
        x = c("Mixed_6e", c("Mixed_6d", c("Mixed_6c", c("Mixed_6b", x))))
        seven = x
        for k in range(1, 4):
            seven = conv(f"Mixed_7a.branch7x7x3_{k}", seven)
        x = torch.cat([conv("Mixed_7a.branch3x3_2", conv("Mixed_7a.branch3x3_1", x), 2, False),
                       conv("Mixed_7a.branch7x7x3_4", seven, 2, False), F.max_pool2d(x, 3, 2)], 1)
        x = e("Mixed_7b", x, avg)
        x = e("Mixed_7c", x, lambda t: F.max_pool2d(t, 3, 1, 1))
        return x.mean(dim=(2, 3)).double().numpy()


def test_fid_inception_loads_pytorch_fid_keys_and_matches_a_line_by_line_forward(tmp_path):
    """The module's keys are torchvision's Inception3 names without AuxLogits (1008 classes); the published
    file's format loads; the network equals the line-by-line forward (on 75 px input, the smallest it takes,
    to save time) and frames are fed as pytorch-fid feeds them (/ 255, bilinear to 299, 2 x - 1); the FID of
    2 output and 2 source frames is pytorch-fid's formula on their features (set-level FID too, over two clips)."""
    from keysync.eval.fid import FIDInceptionV3, load_inception, prepare
    from keysync.eval.quality import QualityNets, QualityScorer, set_totals
    from keysync.eval.score import ClipResult

    expected = {f"{c}.{p}" for c in INCEPTION_CONVS for p in ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")}
    keys = {k for k in FIDInceptionV3().state_dict() if not k.endswith("num_batches_tracked")}
    assert keys == expected | {"fc.weight", "fc.bias"}
    assert FIDInceptionV3().state_dict()["fc.weight"].shape == (1008, 2048)

    path = tmp_path / WEIGHTS["inception"].file
    state = _inception_weights(path)
    net = load_inception(path)
    source = _frames(2, 64, 48)
    output = _frames(2, 64, 48, noise=40)
    scorer = QualityScorer(QualityNets(inception=net))
    for o, s in zip(output, source):
        scorer.add(o, s)
    fid = scorer.values()["fid"]
    ours = scorer.features["fid"]
    small = torch.from_numpy(_frames(2, 75, 75)).permute(0, 3, 1, 2).float() / 127.5 - 1
    by_hand = _inception_by_hand(state, small)
    assert by_hand.shape == (2, 2048) and by_hand.std() > 1e-2  # the random weights give features, not zeros
    with torch.no_grad():
        np.testing.assert_allclose(net(small).double().numpy(), by_hand, rtol=1e-4, atol=1e-5 * np.abs(by_hand).max())
    fed = 2 * F.interpolate(torch.from_numpy(output[:1]).permute(0, 3, 1, 2) / 255.0, size=(299, 299), mode="bilinear") - 1
    torch.testing.assert_close(prepare(output[0]), fed[0].float(), rtol=0, atol=1e-6)
    assert ours[0].shape == ours[1].shape == (2, 2048)
    assert fid == pytest.approx(reference_frechet(*ours), rel=1e-5) and fid > 0

    clips = [ClipResult("a", features={"fid": ours}), ClipResult("b", features={"fid": (ours[1] + 1, ours[0])})]
    pooled = set_totals(clips)["fid_set"]
    both = np.concatenate([ours[0], ours[1] + 1]), np.concatenate([ours[1], ours[0]])
    assert pooled["clips"] == 2 and pooled["mean"] == pytest.approx(reference_frechet(*both), rel=1e-5)


# --- FVD: the I3D ------------------------------------------------------------------------------------------


class _TinyI3D(torch.nn.Module):
    """The I3D TorchScript's call signature: 400 features only for ``return_features=True`` (400 softmaxed
    logits otherwise), and no rescaling or resizing of its own (which the real one would do to other input)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(3, 8, (4, 8, 8), stride=(4, 8, 8))
        self.head = torch.nn.Linear(8 * 4 * 4 * 4, 400)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False):
        if rescale or resize:
            raise RuntimeError("rescale / resize asked of an input already in [-1, 1] at 224 px")
        h = F.adaptive_avg_pool3d(torch.tanh(self.conv(x)), (4, 4, 4)).flatten(1)
        features = self.head(h)
        return features if return_features else torch.softmax(features, dim=1)


def test_fvd_windows_at_25_fps_and_the_distance(tmp_path):
    """Output and source frames (224 px, so the resize is the identity) shown for 1 or 2 ticks each: the
    scorer's windows are the 25 fps frames 0-15 and 16-31 (a last partial window is dropped), scaled to
    [-1, 1], fed to the TorchScript with its flags; the FVD is pytorch-fid's formula on their features."""
    from keysync.eval.fvd import load_i3d
    from keysync.eval.quality import QualityNets, QualityScorer

    torch.manual_seed(0)
    path = tmp_path / WEIGHTS["i3d"].file
    torch.jit.script(_TinyI3D().eval()).save(str(path))
    detector = load_i3d(path)
    rng = np.random.default_rng(1)
    source = rng.integers(0, 256, (35, 224, 224, 3), dtype=np.uint8)
    output = np.clip(source.astype(np.int16) + rng.integers(-60, 61, source.shape), 0, 255).astype(np.uint8)
    ticks = [1, 2, 1, 0, 2] + [1] * 30  # 36 ticks: two windows, 4 ticks left over
    scorer = QualityScorer(QualityNets(i3d=detector))
    for o, s, t in zip(output, source, ticks):
        scorer.add(o, s, ticks=t)
    fvd = scorer.values()["fvd"]
    order = np.repeat(np.arange(len(ticks)), ticks)[:32]
    with torch.no_grad():
        def features(frames):
            windows = frames[order].reshape(2, 16, 224, 224, 3).transpose(0, 4, 1, 2, 3) * (2 / 255) - 1
            return detector(torch.from_numpy(windows.astype(np.float32)), rescale=False, resize=False, return_features=True).double().numpy()
        out_features, src_features = features(output), features(source)
    np.testing.assert_allclose(scorer.features["fvd"][0], out_features, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scorer.features["fvd"][1], src_features, rtol=1e-5, atol=1e-6)
    assert fvd == pytest.approx(reference_frechet(out_features, src_features), rel=1e-5) and fvd > 0


# --- CSIM: ArcFace ----------------------------------------------------------------------------------------------


def _arcface_onnx(path: Path) -> None:
    """An ArcFace-shaped ONNX model: (N, 3, 112, 112) -> (N, 512), position-sensitive (an 8 x 8 / 8 conv, then
    a dense layer) and with biases (so that the input's scale matters to the cosine), with no Sub / Mul nodes up
    front (so insightface reads it as (x - 127.5) / 127.5, as w600k_r50)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    conv = numpy_helper.from_array((rng.normal(size=(16, 3, 8, 8)) * 0.1).astype(np.float32), "conv_w")
    conv_b = numpy_helper.from_array(rng.normal(size=16).astype(np.float32), "conv_b")
    dense = numpy_helper.from_array((rng.normal(size=(16 * 14 * 14, 512)) * 0.05).astype(np.float32), "dense_w")
    dense_b = numpy_helper.from_array(rng.normal(size=512).astype(np.float32), "dense_b")
    nodes = [helper.make_node("Conv", ["input.1", "conv_w", "conv_b"], ["c"], name="Conv_0", kernel_shape=[8, 8], strides=[8, 8]),
             helper.make_node("Relu", ["c"], ["r"], name="Relu_1"),
             helper.make_node("Flatten", ["r"], ["f"], name="Flatten_2", axis=1),
             helper.make_node("Gemm", ["f", "dense_w", "dense_b"], ["683"], name="Gemm_3")]
    graph = helper.make_graph(nodes, "arcface", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])],
                              [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", 512])], [conv, conv_b, dense, dense_b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _landmarks(count: int, rng) -> np.ndarray:
    """68 points per frame where the 5 ArcFace points come from (eyes 36-47, nose tip 30, mouth 48 / 54) on a
    face drifting by a few pixels; the rest anywhere."""
    lm = rng.uniform(20, 100, (count, 68, 2))
    for k in range(count):
        shift = rng.normal(size=2) * 3
        lm[k, 36:42] = np.array([45, 50]) + rng.normal(size=(6, 2)) * 4 + shift
        lm[k, 42:48] = np.array([85, 52]) + rng.normal(size=(6, 2)) * 4 + shift
        lm[k, 30] = np.array([66, 72]) + shift
        lm[k, 48], lm[k, 54] = np.array([50, 92]) + shift, np.array([82, 93]) + shift
    return lm


def test_csim_is_insightfaces_cosine_of_aligned_faces(tmp_path):
    """The scorer's CSIM is the mean over frames with a face of the cosine between the embeddings of the
    output's and the source's faces, aligned by the 5 points of the 68 landmarks: recomputed with
    insightface's ``norm_crop`` and ``ArcFaceONNX`` (scikit-image, OpenCV and onnxruntime where insightface
    does not import) and numpy; 1 for identical frames; a frame without a face is left out."""
    import cv2

    from keysync.eval.csim import ARCFACE_POINTS, load_arcface
    from keysync.eval.quality import QualityNets, QualityScorer

    path = tmp_path / WEIGHTS["arcface"].file
    _arcface_onnx(path)
    arcface = load_arcface(path)
    rng = np.random.default_rng(3)
    source = _frames(4, 128, 128)
    output = source.copy()
    output[:, 80:] = _frames(4, 128, 128, noise=90)[:, 80:]  # a different lower face
    landmarks = _landmarks(4, rng)

    same = QualityScorer(QualityNets(arcface=arcface))
    scorer = QualityScorer(QualityNets(arcface=arcface))
    for k in range(4):
        same.add(source[k], source[k], landmarks=landmarks[k])
        scorer.add(output[k], source[k], landmarks=landmarks[k] if k != 2 else None)
    assert same.values()["csim"] == pytest.approx(1.0, abs=1e-6)
    csim = scorer.values()["csim"]

    points = [np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]]) for lm in landmarks]
    try:
        from insightface.model_zoo.arcface_onnx import ArcFaceONNX
        from insightface.utils.face_align import norm_crop

        reference = ArcFaceONNX(model_file=str(path))
        assert (reference.input_mean, reference.input_std) == (127.5, 127.5)

        def embed(image, kps):  # insightface reads BGR images (cv2.imread) and swaps them to RGB
            return reference.get_feat(norm_crop(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), kps)).ravel()
    except ImportError:
        import onnxruntime
        from skimage.transform import SimilarityTransform

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def embed(image, kps):
            tform = SimilarityTransform()
            tform.estimate(kps, ARCFACE_POINTS)
            crop = cv2.warpAffine(image, tform.params[:2], (112, 112), borderValue=0.0)
            blob = ((crop.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]
            return session.run(None, {"input.1": blob})[0].ravel()

    cosines = []
    for k in (0, 1, 3):
        e1, e2 = embed(output[k], points[k]), embed(source[k], points[k])
        cosines.append(float(np.dot(e1, e2) / (np.linalg.norm(e1) * np.linalg.norm(e2))))
    assert csim == pytest.approx(np.mean(cosines), abs=1e-6) and csim < 0.999


# --- LPIPS -------------------------------------------------------------------------------------------------------

ALEXNET_CONVS = {0: (64, 3, 11), 3: (192, 64, 5), 6: (384, 192, 3), 8: (256, 384, 3), 10: (256, 256, 3)}
ALEXNET_CLASSIFIER = {1: (4096, 9216), 4: (4096, 4096), 6: (1000, 4096)}


def _lpips_weights(folder: Path) -> tuple[Path, Path, dict, dict]:
    """torchvision's alexnet-owt file (features.* random, classifier.* at their real shapes as stride-0 views,
    so the file stays small) and lpips' alex.pth (lin{k}.model.1.weight, non-negative as trained), both legacy
    torch pickles as published."""
    g = torch.Generator().manual_seed(4)
    alexnet = {}
    for i, (cout, cin, k) in ALEXNET_CONVS.items():
        alexnet[f"features.{i}.weight"] = torch.randn(cout, cin, k, k, generator=g) * (2 / (cin * k * k)) ** 0.5
        alexnet[f"features.{i}.bias"] = torch.randn(cout, generator=g) * 0.1
    for i, shape in ALEXNET_CLASSIFIER.items():
        alexnet[f"classifier.{i}.weight"] = torch.zeros(1).expand(*shape)
        alexnet[f"classifier.{i}.bias"] = torch.zeros(1).expand(shape[0])
    linear = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for k, c in enumerate((64, 192, 384, 256, 256))}
    paths = folder / WEIGHTS["lpips_alexnet"].file, folder / WEIGHTS["lpips_linear"].file
    for state, path in zip((alexnet, linear), paths):
        torch.save(state, path, _use_new_zipfile_serialization=False)
    return *paths, alexnet, linear


def _lpips_by_hand(alexnet: dict, linear: dict, a: np.ndarray, b: np.ndarray) -> float:
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def taps(image):
        x = (torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1 - shift) / scale
        out = []
        for i in ALEXNET_CONVS:
            if i in (3, 6):
                x = F.max_pool2d(x, 3, 2)
            x = F.relu(F.conv2d(x, alexnet[f"features.{i}.weight"], alexnet[f"features.{i}.bias"], stride=4 if i == 0 else 1,
                                padding=2 if i in (0, 3) else 1))
            out.append(x)
        return out

    total = 0.0
    with torch.no_grad():
        for k, (x, y) in enumerate(zip(taps(a), taps(b))):
            x = x / (x.norm(dim=1, keepdim=True) + 1e-10)
            y = y / (y.norm(dim=1, keepdim=True) + 1e-10)
            total += float(((x - y) ** 2 * linear[f"lin{k}.model.1.weight"]).sum(dim=1).mean())
    return total


def test_lpips_matches_a_line_by_line_recomputation_in_the_frame_and_the_box(tmp_path):
    """LPIPS of whole frames and of the regenerated box's crop (a box mask's bounding rectangle), averaged
    over frames, against lpips' v0.1 computation written out here from the two state dicts; 0 for identical
    frames; a box under 31 px is left out."""
    from keysync.eval.lpips import load_lpips
    from keysync.eval.quality import QualityNets, QualityScorer

    alexnet_path, linear_path, alexnet, linear = _lpips_weights(tmp_path)
    net = load_lpips(alexnet_path, linear_path)
    source = _frames(3, 80, 64)
    output = _frames(3, 80, 64, noise=50)
    boxes = np.zeros((3, 64, 80), bool)
    boxes[0, 20:, 10:60] = True
    boxes[1, 25:, 12:62] = True
    boxes[2, 50:, 10:30] = True  # 14 x 20 px: too small for AlexNet
    scorer = QualityScorer(QualityNets(lpips=net))
    same = QualityScorer(QualityNets(lpips=net))
    for o, s, box in zip(output, source, boxes):
        scorer.add(o, s, box)
        same.add(s, s, box)
    values = scorer.values()
    frame = np.mean([_lpips_by_hand(alexnet, linear, o, s) for o, s in zip(output, source)])
    box = np.mean([_lpips_by_hand(alexnet, linear, output[0][20:, 10:60], source[0][20:, 10:60]),
                   _lpips_by_hand(alexnet, linear, output[1][25:, 12:62], source[1][25:, 12:62])])
    assert values["lpips_frame"] == pytest.approx(frame, rel=1e-5) and frame > 0.01
    assert values["lpips_box"] == pytest.approx(box, rel=1e-5) and box != pytest.approx(frame, rel=1e-3)
    assert same.values()["lpips_frame"] == 0 and same.values()["lpips_box"] == 0


# --- weights: missing, unsafe, the CLI ------------------------------------------------------------------


def test_missing_weight_files_are_one_line_naming_the_file_and_where_it_is_published(tmp_path):
    from keysync.eval.csim import load_arcface
    from keysync.eval.fid import load_inception
    from keysync.eval.fvd import load_i3d
    from keysync.eval.lpips import load_lpips

    missing = tmp_path / "nowhere.pth"
    alexnet_path, linear_path, _, _ = _lpips_weights(tmp_path)
    loaders = {"inception": load_inception, "i3d": load_i3d, "arcface": load_arcface,
               "lpips_alexnet": lambda p: load_lpips(p, linear_path), "lpips_linear": lambda p: load_lpips(alexnet_path, p)}
    for key, load in loaders.items():
        with pytest.raises(KeySyncError) as err:
            load(missing)
        message = str(err.value)
        assert "\n" not in message and str(missing) in message, message
        assert WEIGHTS[key].file in message and WEIGHTS[key].url in message and WEIGHTS[key].flag in message, message


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.mkdir, (self.marker,))


def test_a_pickle_that_would_run_code_and_wrong_weights_are_refused(tmp_path):
    from keysync.eval.fid import load_inception
    from keysync.eval.lpips import load_lpips

    evil, marker = tmp_path / WEIGHTS["inception"].file, tmp_path / "code-ran"
    with open(evil, "wb") as f:
        pickle.dump({"Conv2d_1a_3x3.conv.weight": _RunsCode(marker)}, f, protocol=2)
    with pytest.raises(KeySyncError, match="would run code") as err:
        load_inception(evil)
    assert not marker.exists() and "\n" not in str(err.value)

    alexnet_path, _, _, linear = _lpips_weights(tmp_path)
    wrong = tmp_path / "vgg.pth"
    torch.save({**linear, "lin5.model.1.weight": torch.ones(1, 512, 1, 1)}, wrong)  # lpips' VGG file has 7 layers
    with pytest.raises(KeySyncError, match="unexpected: lin5.model.1.weight") as err:
        load_lpips(alexnet_path, wrong)
    assert "alex.pth" in str(err.value)


FRAMES = 6


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    frames = list(moving_frames(astronaut(), 320, 240, FRAMES, photo_height=230))  # a mouth box over 31 px wide
    rng = np.random.default_rng(5)
    noisy = [np.clip(f.astype(np.int16) + rng.integers(-20, 21, f.shape), 0, 255).astype(np.uint8) for f in frames]
    write_clip(root / "out.mp4", noisy, audio=tone(FRAMES / 25))
    write_clip(root / "src.mp4", frames, audio=tone(FRAMES / 25))
    alexnet_path, linear_path, alexnet, linear = _lpips_weights(root)
    return root, alexnet_path, linear_path, alexnet, linear


def _eval(args, capsys):
    code = main(["eval", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line]


def test_cli_skips_metrics_without_weights_and_scores_the_rest(clip, capsys):
    """LPIPS's weights only: one line for each other weight-bound metric (file and where it is published),
    and LPIPS over the whole frame is the line-by-line LPIPS of the decoded frames; the same weights named
    by a YAML file with ``--metrics lpips,psnr`` give the same LPIPS and only what was asked for."""
    from keysync.media.source import VideoSource

    root, alexnet_path, linear_path, alexnet, linear = clip
    code, _, err = _eval([root / "out.mp4", "--sources", root / "src.mp4", "--lpips-alexnet", alexnet_path,
                            "--lpips-linear", linear_path, "--json", root / "flags.json"], capsys)
    assert code == 0, err
    assert [line.split(" skipped")[0] for line in err] == ["keysync: LSE-C / LSE-D", "keysync: FID", "keysync: FVD", "keysync: CSIM"]
    for line, key in zip(err, ("syncnet", "inception", "i3d", "arcface")):
        assert WEIGHTS[key].file in line and WEIGHTS[key].url in line and WEIGHTS[key].flag in line, line
    scores = json.loads((root / "flags.json").read_text())["clips"][0]
    assert scores["fid"] is None and scores["csim"] is None and scores["lpips_box"] is not None and scores["ssim_frame"] is not None
    decoded = [(o.image, s.image) for o, s in zip(VideoSource(root / "out.mp4").frames(), VideoSource(root / "src.mp4").frames())]
    assert len(decoded) == FRAMES
    assert scores["lpips_frame"] == pytest.approx(np.mean([_lpips_by_hand(alexnet, linear, o, s) for o, s in decoded]), rel=1e-5)

    (root / "weights.yaml").write_text(f"lpips_alexnet: {alexnet_path.name}\nlpips_linear: {linear_path}\n")
    code, _, err = _eval([root / "out.mp4", "--sources", root / "src.mp4", "--weights-config", root / "weights.yaml",
                            "--metrics", "lpips,psnr", "--json", root / "config.json"], capsys)
    assert code == 0 and err == [], err
    picked = json.loads((root / "config.json").read_text())["clips"][0]
    assert picked["lpips_frame"] == scores["lpips_frame"] and picked["lpips_box"] == scores["lpips_box"]
    assert picked["psnr_frame"] == scores["psnr_frame"]
    assert picked["ssim_frame"] is None and picked["lipleak"] is None and picked["lse_d"] is None


def test_cli_a_missing_or_unasked_for_weight_is_one_line(clip, capsys, tmp_path):
    root = clip[0]
    missing = tmp_path / WEIGHTS["inception"].file
    code, out, err = _eval([root / "out.mp4", "--sources", root / "src.mp4", "--inception", missing], capsys)
    assert code == 1 and len(err) == 1 and str(missing) in err[0] and WEIGHTS["inception"].url in err[0] and out == "", err
    code, out, err = _eval([root / "out.mp4", "--metrics", "fvd,psnr"], capsys)
    assert code == 1 and len(err) == 1 and "--i3d" in err[0] and WEIGHTS["i3d"].url in err[0] and out == "", err
    (tmp_path / "w.yaml").write_text("inceptoin: x.pth\n")
    code, _, err = _eval([root / "out.mp4", "--weights-config", tmp_path / "w.yaml"], capsys)
    assert code == 1 and len(err) == 1 and "inceptoin" in err[0], err
