"""Occluder masks (a hand, a microphone in front of the face) from clicks, tracked by SAM 2.

The reference code clicks once on an occluder and tracks it with SAM 2 forward from that frame, for
512x512 video only. Here the clicks (positive and negative) are on any frame; the object is tracked
backward to the first frame and forward to the last, at any frame size, with memory flat in the video's
length. The result is the ``(frames, height, width)`` uint8 array ``keysync dub --occluders`` reads.

SAM 2 runs through transformers' ``Sam2VideoModel``; the frames are resized and normalised here, since
transformers' SAM 2 video processor needs torchvision, which keysync does not install.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..constants import SAMPLE_RATE
from ..errors import KeySyncError
from ..files import write_atomic
from ..media.video import probe_video, read_frames
from ..media.writer import check_output_path

DEFAULT_SEGMENTER = "facebook/sam2.1-hiera-tiny"
MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # SAM 2's preprocessing (ImageNet statistics)
STD = np.array([0.229, 0.224, 0.225], np.float32)
OBJECT = 1


@dataclass
class Clicks:
    """Points on frame ``frame`` in video pixels (x, y): ``positive`` on the occluder, ``negative`` off it."""

    frame: int
    positive: list[tuple[float, float]]
    negative: list[tuple[float, float]]


def load_segmenter(name: str, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """A SAM 2 video model from a local folder or a hub id (cached or downloadable)."""
    from transformers import Sam2VideoModel

    try:
        model = Sam2VideoModel.from_pretrained(name, dtype=dtype)
    except (OSError, ValueError) as err:
        raise KeySyncError(
            f"cannot load the SAM 2 model {name} ({str(err).splitlines()[0]}); where there is internet run "
            f"`hf download {DEFAULT_SEGMENTER} --local-dir sam2` and pass --segmenter sam2"
        ) from None
    return model.to(device).eval()


class _Tracker:
    """One SAM 2 streaming session tracking one object; frames are given by index, in either direction."""

    def __init__(self, model, height: int, width: int):
        from transformers import Sam2VideoInferenceSession

        self.model, self.height, self.width = model, height, width
        self.size = int(model.config.image_size)
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.session = Sam2VideoInferenceSession(
            video_height=height, video_width=width, inference_device=self.device,
            inference_state_device=self.device, video_storage_device=self.device, dtype=self.dtype,
        )
        # frames whose memories a step may read: SAM 2 looks back num_maskmem frames for memories and
        # max_object_pointers_in_encoder frames for object pointers; older ones are dropped
        self.horizon = max(int(model.config.num_maskmem), int(model.config.max_object_pointers_in_encoder))

    def pixels(self, image: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 frame -> (size, size, 3) uint8, SAM 2's input size (aspect not kept, as SAM 2 does)."""
        return cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_LINEAR)

    def click(self, clicks: Clicks) -> None:
        points = list(clicks.positive) + list(clicks.negative)
        coords = torch.tensor(points, dtype=torch.float32)
        coords[:, 0] *= self.size / self.width
        coords[:, 1] *= self.size / self.height
        labels = torch.tensor([1] * len(clicks.positive) + [0] * len(clicks.negative), dtype=torch.int32)
        idx = self.session.obj_id_to_idx(OBJECT)
        self.session.add_point_inputs(idx, clicks.frame, {"point_coords": coords[None, None], "point_labels": labels[None, None]})
        self.session.remove_mask_inputs(idx, clicks.frame)
        self.session.obj_with_new_inputs = [OBJECT]

    @torch.inference_mode()
    def step(self, index: int, resized: np.ndarray, anchor: int, reverse: bool = False) -> np.ndarray:
        """Track onto frame ``index`` (its ``pixels``): its (H, W) uint8 mask, 1 = occluder."""
        x = (resized.astype(np.float32) / 255 - MEAN) / STD
        frame = torch.from_numpy(x).permute(2, 0, 1).to(self.device, self.dtype)
        out = self.model(inference_session=self.session, frame_idx=index, frame=frame, reverse=reverse)
        self._forget(index, anchor)
        logits = out.pred_masks[0, 0].float().cpu().numpy()
        full = cv2.resize(logits, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        return (full > 0).astype(np.uint8)

    def _forget(self, index: int, anchor: int) -> None:
        """Drop the frame's pixels and the memories no later step reads, so long videos fit in memory: those
        near ``index`` feed the next steps, those near ``anchor`` (the clicked frame) the pass the other way."""
        self.session.processed_frames.pop(index, None)
        for outputs in self.session.output_dict_per_obj.values():
            kept = outputs["non_cond_frame_outputs"]
            for i in [i for i in kept if min(abs(i - index), abs(i - anchor)) > self.horizon]:
                del kept[i]


def check_request(video: str | Path, output: str | Path, clicks: Clicks, overwrite: bool = False):
    """Refuse a bad output path or clicks before any work (the CLI calls it before loading SAM 2); the
    video's ``VideoInfo``."""
    output = check_output_path(output, inputs=[video], overwrite=overwrite)
    if output.suffix != ".npy":
        raise KeySyncError(f"{output}: occluder masks are written as .npy; give a path ending in .npy")
    info = probe_video(video)
    check_clicks(clicks, info.width, info.height)
    return info


def check_clicks(clicks: Clicks, width: int, height: int) -> None:
    """Refuse clicks off the frame or a negative frame index, naming the fix."""
    if not clicks.positive:
        raise KeySyncError("no click on the occluder; give at least one --point X,Y on it")
    for x, y in list(clicks.positive) + list(clicks.negative):
        if not (0 <= x < width and 0 <= y < height):
            raise KeySyncError(f"point {x:g},{y:g} is outside the {width}x{height} frame; give pixel coordinates inside it")
    if clicks.frame < 0:
        raise KeySyncError(f"--frame {clicks.frame} is negative; give the index of the frame the points are on")


def track_occluders(video: str | Path, output: str | Path, clicks: Clicks, model, overwrite: bool = False, progress: bool = True) -> Path:
    """Write ``output`` (.npy, (frames, H, W) uint8, 1 = occluder) for every frame of ``video``.

    Frames before the clicked one are kept resized in a temporary file until the click's frame is
    reached, then tracked backward from it; the rest are tracked forward as they are decoded.
    """
    from tqdm import tqdm

    info = check_request(video, output, clicks, overwrite)
    output, width, height = Path(output), info.width, info.height
    tracker = _Tracker(model, height, width)
    plane = height * width
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.stem}.") as tmp:
        before = np.lib.format.open_memmap(Path(tmp) / "before.npy", "w+", np.uint8, (clicks.frame, tracker.size, tracker.size, 3)) if clicks.frame else None
        masks_path = Path(tmp) / "masks.u8"
        count = 0
        bar = tqdm(total=info.frame_count or None, desc="occluders", unit="frame", disable=not progress)
        with open(masks_path, "wb") as masks:
            masks.truncate(clicks.frame * plane)  # the backward pass fills frames 0..click-1 in place
            for frame in read_frames(video):
                resized = tracker.pixels(frame.image)
                if frame.index < clicks.frame:
                    before[frame.index] = resized
                    count += 1
                    continue
                if frame.index == clicks.frame:
                    tracker.click(clicks)
                    masks.seek(frame.index * plane)
                    masks.write(tracker.step(frame.index, resized, clicks.frame).tobytes())
                    for i in range(clicks.frame - 1, -1, -1):
                        masks.seek(i * plane)
                        masks.write(tracker.step(i, before[i], clicks.frame, reverse=True).tobytes())
                        bar.update()
                    masks.seek((frame.index + 1) * plane)
                else:
                    masks.write(tracker.step(frame.index, resized, clicks.frame).tobytes())
                count += 1
                bar.update()
        bar.close()
        if count <= clicks.frame:
            raise KeySyncError(
                f"the clicked frame {clicks.frame} is past the video's last frame ({count - 1}); give a frame index it "
                "has (--frame; --occluder-frame in `keysync dub`)"
            )
        _write_npy(masks_path, output, (count, height, width))
    return output


def _write_npy(raw: Path, output: Path, shape: tuple[int, int, int]) -> None:
    """``raw`` uint8 bytes -> ``output`` .npy of ``shape``, complete or not at all."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f, open(raw, "rb") as src:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": shape})
            while chunk := src.read(1 << 24):
                f.write(chunk)

    write_atomic(output, write)


def preview_masks(video: str | Path, masks: str | Path, output: Path, overwrite: bool = False) -> Path:
    """``video`` with its occluder masks tinted red (the source's audio kept), to check a tracking run."""
    from ..media.audio import load_audio
    from ..media.writer import VideoWriter

    info = probe_video(video)
    tracked = np.load(masks, mmap_mode="r")
    audio = load_audio(video, sample_rate=info.audio_rate, mono=info.audio_channels == 1) if info.has_audio else None
    red = np.array([255, 0, 0], np.float32)
    with VideoWriter(output, info.width, info.height, rate=info.average_rate, time_base=info.time_base,
                     audio=audio, audio_rate=info.audio_rate or SAMPLE_RATE, overwrite=overwrite) as writer:
        for frame in read_frames(video):
            image = frame.image
            if frame.index < len(tracked):
                on = np.asarray(tracked[frame.index], bool)[..., None]
                image = np.where(on, 0.5 * image + 0.5 * red, image).astype(np.uint8)
            writer.write(image, frame.time)
    return output
