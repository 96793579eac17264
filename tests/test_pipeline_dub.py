"""``keysync dub`` end to end with a small random-weight model (plumbing, not quality)."""

import numpy as np
import pytest

from keysync.cli import main
from keysync.errors import KeySyncError
from keysync.faces.paste import frame_weights
from keysync.media.audio import load_audio
from keysync.media.video import probe_video, read_frames
from keysync.media.writer import VideoWriter
from keysync.pipeline import dub as dub_module
from keysync.pipeline.dub import DubOptions, KeySyncPipeline, make_timeline

from .faces_media_clips import astronaut, clicks, moving_frames, tone, write_clip, write_wav
from .micro import micro_model

STEPS = 2  # per stage: these tests hold the plumbing (lengths, timestamps, paste regions, occluders), not the
# schedule, and 2 steps cost a sixth of 11; the default schedule's output is test_pipeline_default_output's


@pytest.fixture(scope="module")
def pipe():
    return KeySyncPipeline(micro_model(audio_window=1))  # windowed audio tokens, as the shipped model has


def record_writes(monkeypatch):
    """Capture what the pipeline hands the encoder (the exact pixels, before lossy coding)."""
    frames = []
    original = VideoWriter.write

    def write(self, image, time=None):
        frames.append((time, image.copy()))
        return original(self, image, time)

    monkeypatch.setattr(VideoWriter, "write", write)
    return frames


def record_writes_and_pastes(monkeypatch):
    """Written frames, and for each output frame the (box, mask) pairs pasted into it. Pasting runs ahead
    of writing (another thread), so a pasted frame is matched to its write by identity."""
    written, boxes_masks, pasted = [], {}, {}
    original, real_paste = VideoWriter.write, dub_module.paste_back

    def paste(image, crop, box, mask, **kw):
        out = real_paste(image, crop, box, mask, **kw)
        pasted[id(out)] = (out, box, mask)  # holding ``out`` keeps its id unique until it is written
        return out

    def write(self, image, time=None):
        if id(image) in pasted:
            _, box, mask = pasted.pop(id(image))
            boxes_masks[len(written)] = [(box, mask)]
        written.append((time, image.copy()))
        return original(self, image, time)

    monkeypatch.setattr(dub_module, "paste_back", paste)
    monkeypatch.setattr(VideoWriter, "write", write)
    return written, boxes_masks


def outside_paste_region_unchanged(written, source_path, boxes_masks, shown=None):
    """Every written frame equals its source frame (``shown[j]``, default j) outside the pasted region."""
    sources = {f.index: f.image for f in read_frames(source_path)}
    for j, (_, image) in enumerate(written):
        src = sources[j if shown is None else shown[j]]
        untouched = np.ones(image.shape[:2], bool)
        for box, mask in boxes_masks.get(j, []):
            rows, cols, alpha = frame_weights(image.shape, box, mask)
            untouched[rows, cols] &= alpha == 0
        assert np.array_equal(image[untouched], src[untouched]), f"frame {j} changed outside the paste region"


def test_timeline_policies():
    times = np.arange(219) / 30  # 7.3 s at 30 fps
    trim = make_timeline(times, 30, audio_frames=225, long_audio="trim", short_audio="pad")
    assert trim.num_model_frames == 182 and len(trim.output_source) == 219
    hold = make_timeline(times, 30, audio_frames=225, long_audio="hold", short_audio="pad")
    assert hold.num_model_frames == 225 and len(hold.output_source) == 270
    assert np.all(hold.output_source[219:] == 218) and np.allclose(np.diff(hold.output_times), 1 / 30)
    pad = make_timeline(times, 30, audio_frames=100, long_audio="trim", short_audio="pad")
    assert pad.num_model_frames == 182 and len(pad.output_source) == 219
    ping = make_timeline(np.arange(10) / 25, 25, audio_frames=30, long_audio="pingpong", short_audio="pad")
    assert ping.model_source.tolist() == [*range(10), *range(8, 0, -1), *range(10), 8, 7]
    assert ping.output_source.tolist() == ping.model_source.tolist()
    cut = make_timeline(times, 30, audio_frames=100, long_audio="trim", short_audio="trim")
    assert cut.num_model_frames == 100 and len(cut.output_source) == 120


def test_length_policies_say_what_they_drop_or_pad(caplog):
    """Speech 10x the video's length is trimmed, and short speech padded, with one line that says so."""
    times = np.arange(63) / 25  # 2.52 s
    with caplog.at_level("WARNING", logger="keysync.pipeline.dub"):
        make_timeline(times, 25, audio_frames=630, long_audio="trim", short_audio="pad")
        make_timeline(times, 25, audio_frames=5, long_audio="trim", short_audio="pad")
        make_timeline(times, 25, audio_frames=64, long_audio="trim", short_audio="pad")  # a frame apart: said nothing
    assert caplog.messages == [
        "the speech is 25.20 s and the video 2.52 s: the last 22.68 s of speech are dropped (--long-audio hold or pingpong keeps them)",
        "the speech is 0.20 s and the video 2.52 s: the last 2.32 s of video are dubbed with silence (--short-audio trim cuts them)",
    ]


def test_1080p_30fps_with_longer_audio(tmp_path, pipe, monkeypatch):
    # 1.2 s of video and 2 s of speech, held on the last frame: 50 model frames (streaming across windows is
    # tests/test_batch_split.py's and test_windows_stream_across_boundaries')
    video = write_clip(tmp_path / "in.mp4", moving_frames(astronaut(), 1920, 1080, 36, photo_height=900), rate=30,
                       audio=clicks(1.2, [0.6]))
    audio = write_wav(tmp_path / "speech.mp4", tone(2.0))
    written, boxes_masks = record_writes_and_pastes(monkeypatch)
    out = pipe.dub_file(video, audio, tmp_path / "out.mp4", DubOptions(steps=STEPS, long_audio="hold", progress=False))
    info = probe_video(out)
    assert (info.width, info.height) == (1920, 1080) and float(info.average_rate) == pytest.approx(30, rel=1e-3)
    assert len(written) == 60  # hold: 2 s at 30 fps
    assert len(boxes_masks) == 60  # the face is dubbed in every frame
    assert load_audio(out).shape[0] == pytest.approx(2.0 * 16000, abs=800)
    outside_paste_region_unchanged(written, video, boxes_masks, shown=[min(j, 35) for j in range(60)])  # held: frame 35


def test_short_clip_same_seed_same_output_and_cli_errors(tmp_path, pipe, monkeypatch, capsys):
    video = write_clip(tmp_path / "in.mp4", moving_frames(astronaut(), 320, 240, 10, photo_height=220), rate=25)
    audio = write_wav(tmp_path / "speech.mp4", tone(0.4))
    runs = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        written = record_writes(monkeypatch)
        pipe.dub_file(video, audio, tmp_path / f"{name}.mp4", DubOptions(steps=STEPS, seed=seed, progress=False))
        runs.append(np.stack([im for _, im in written]))
        monkeypatch.undo()
    assert len(runs[0]) == 10
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], runs[2])

    # one-line errors, non-zero exit, nothing written
    out = tmp_path / "x.mp4"
    cases = [
        ["dub", str(tmp_path / "missing.mp4"), str(audio), "-o", str(out), "--model", "x"],
        ["dub", str(video), str(audio), "-o", str(tmp_path / "a.mp4"), "--model", "x"],  # exists
        ["dub", str(video), str(audio), "-o", str(out), "--model", str(tmp_path)],  # not a model folder
    ]
    for args in cases:
        assert main(args) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("keysync dub: error:"), err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4", "c.mp4", "in.mp4", "speech.mp4"]


def test_frames_in_memory_give_what_dub_file_writes(tmp_path, pipe, monkeypatch):
    """The frames API (frames and a waveform in memory, no file) makes the very pixels ``dub_file`` hands
    the encoder; PIL images and floats in [0, 1] are frames too; the output says which face and how long."""
    from PIL import Image

    from keysync import KeySyncPipeline as exported
    from keysync.media import load_audio, read_frames

    assert exported is KeySyncPipeline
    video = write_clip(tmp_path / "in.mp4", moving_frames(astronaut(), 320, 240, 12, photo_height=220), rate=25)
    audio = write_wav(tmp_path / "speech.mp4", tone(0.5))
    written = record_writes(monkeypatch)
    pipe.dub_file(video, audio, tmp_path / "out.mp4", DubOptions(steps=STEPS, progress=False))
    monkeypatch.undo()
    frames = np.stack([f.image for f in read_frames(video)])
    wave = load_audio(audio)
    out = pipe(frames, wave, fps=25, progress=False, steps=STEPS)
    dubbed = np.stack(list(out.frames))
    assert np.array_equal(dubbed, np.stack([im for _, im in written]))
    assert np.allclose(out.times, [t for t, _ in written]) and out.size == (320, 240)
    assert out.target.present.all() and out.timings["sampling"] > 0
    as_pil = pipe([Image.fromarray(f) for f in frames], np.stack([wave, wave]), fps=25, progress=False, steps=STEPS)
    assert np.array_equal(np.stack(list(as_pil.frames)), dubbed)
    as_float = pipe(frames / 255.0, wave, fps=25, progress=False, steps=STEPS)
    assert np.array_equal(np.stack(list(as_float.frames)), dubbed)
    with pytest.raises(KeySyncError, match="give the frames' rate"):
        pipe(frames, wave)


def test_training_crops_are_the_crops_dub_cuts(tmp_path, pipe, monkeypatch):
    """One face front end: the crops `keysync prepare` stores for training are, bit for bit, the crops
    `keysync dub` cuts from the same video (moving head, a gap without the face in the middle)."""
    from safetensors.torch import load_file

    from keysync.train.data import prepare

    frames = list(moving_frames(astronaut(), 320, 240, 20, photo_height=220))
    for i in (9, 10):
        frames[i] = np.zeros_like(frames[i])  # no face: both fill these frames from the nearest face
    (tmp_path / "src").mkdir()
    video = write_clip(tmp_path / "src" / "clip.mp4", frames, rate=25, audio=tone(0.8))
    shards = prepare(tmp_path / "src", tmp_path / "shards", pipe.model, progress=False, latents=False)
    stored = load_file(shards[0])["pixels"].permute(0, 2, 3, 1).numpy()
    cut, real_cut = [], dub_module.cut_crop
    monkeypatch.setattr(dub_module, "cut_crop", lambda image, box: cut.append(real_cut(image, box)) or cut[-1])
    list(pipe(str(video), str(video), progress=False, steps=STEPS).frames)
    # the identity reference, the keyframes (model frames 0, 13 and 26, which shows the last frame) from the
    # frames tracking kept, then every frame of the window
    assert len(cut) == 1 + 3 + 20
    assert len(stored) == 20 and np.array_equal(np.stack(cut[4:]), stored)
    assert np.array_equal(np.stack(cut[1:4]), stored[[0, 13, 19]])


def test_no_face_at_all_is_an_error(tmp_path, pipe):
    video = write_clip(tmp_path / "grey.mp4", [np.full((120, 160, 3), 90, np.uint8)] * 5)
    audio = write_wav(tmp_path / "speech.mp4", tone(0.3))
    with pytest.raises(KeySyncError, match="no face found"):
        pipe.dub_file(video, audio, tmp_path / "out.mp4", DubOptions(steps=STEPS, progress=False))
    assert not (tmp_path / "out.mp4").exists()


def test_random_weights_cli_says_so(tmp_path, capsys):
    video = write_clip(tmp_path / "in.mp4", moving_frames(astronaut(), 320, 240, 10, photo_height=220), rate=25)
    audio = write_wav(tmp_path / "speech.mp4", tone(0.4))
    # the `small` preset is the laptop size; keep this short clip to one window
    assert main(["dub", str(video), str(audio), "-o", str(tmp_path / "o.mp4"), "--model", "small", "--random-weights", "--quiet"]) == 0
    assert "RANDOM WEIGHTS" in capsys.readouterr().err
    assert len(list(read_frames(tmp_path / "o.mp4"))) == 10


def test_occluder_pixels_are_kept_from_the_source(tmp_path, pipe, monkeypatch):
    frames = list(moving_frames(astronaut(), 320, 240, 10, photo_height=220))
    video = write_clip(tmp_path / "in.mp4", frames, rate=25)
    audio = write_wav(tmp_path / "speech.mp4", tone(0.4))
    decoded = [f.image for f in read_frames(video)]
    written = record_writes(monkeypatch)
    pipe.dub_file(video, audio, tmp_path / "plain.mp4", DubOptions(steps=STEPS, progress=False))
    monkeypatch.undo()
    plain = [im for _, im in written]
    changed = np.any([np.any(im != src, axis=-1) for (_, im), src in zip(written, decoded)], axis=0)
    rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
    (y0, y1), (x0, x1) = (rows[0], rows[-1]), (cols[0], cols[-1])
    assert y1 - y0 > 30 and x1 - x0 > 30  # the lower face was regenerated

    occluders = np.zeros((10, 240, 320), np.float32)
    occluders[:, y0 : y1 + 1, (x0 + x1) // 2 - 15 : (x0 + x1) // 2 + 15] = 1  # a microphone across the mouth
    np.save(tmp_path / "occ.npy", occluders)
    np.save(tmp_path / "bad.npy", occluders[:, :100])
    with pytest.raises(Exception, match="expected \\(10, 240, 320\\)"):
        pipe.dub_file(video, audio, tmp_path / "bad.mp4", DubOptions(steps=STEPS, occluders=str(tmp_path / "bad.npy"), progress=False))
    written = record_writes(monkeypatch)
    pipe.dub_file(video, audio, tmp_path / "out.mp4", DubOptions(steps=STEPS, occluders=str(tmp_path / "occ.npy"), progress=False))
    inner = (slice(y0 + 8, y1 - 8), slice((x0 + x1) // 2 - 8, (x0 + x1) // 2 + 8))  # minus the feathered edge
    assert any(not np.array_equal(im[inner], src[inner]) for im, src in zip(plain, decoded))
    for (_, image), src in zip(written, decoded):
        assert np.array_equal(image[inner], src[inner])
        assert not np.array_equal(image, src)  # the rest of the lower face is still regenerated


def test_pingpong_plays_the_video_back_and_forth(tmp_path, pipe, monkeypatch):
    video = write_clip(tmp_path / "in.mp4", moving_frames(astronaut(), 320, 240, 10, photo_height=220), rate=25)
    audio = write_wav(tmp_path / "speech.mp4", tone(1.2))
    written, boxes_masks = record_writes_and_pastes(monkeypatch)
    pipe.dub_file(video, audio, tmp_path / "out.mp4", DubOptions(steps=STEPS, long_audio="pingpong", progress=False))
    shown = [*range(10), *range(8, 0, -1), *range(10), 8, 7]
    assert len(written) == 30
    outside_paste_region_unchanged(written, video, boxes_masks, shown)


def test_middle_second_without_a_face_passes_through(tmp_path, pipe, monkeypatch):
    frames = list(moving_frames(astronaut(), 320, 240, 75, photo_height=220))
    for i in range(25, 50):
        frames[i] = np.zeros_like(frames[i])  # a black cut: no face for one second
    video = write_clip(tmp_path / "in.mp4", frames, rate=25)
    audio = write_wav(tmp_path / "speech.mp4", tone(3.0))
    written, boxes_masks = record_writes_and_pastes(monkeypatch)
    pipe.dub_file(video, audio, tmp_path / "out.mp4", DubOptions(steps=STEPS, progress=False))
    decoded = [f.image for f in read_frames(video)]
    assert len(written) == 75
    assert set(boxes_masks) == set(range(25)) | set(range(50, 75))  # dubbed exactly where the face is
    for i in range(25, 50):
        assert np.array_equal(written[i][1], decoded[i])


def test_a_model_with_more_latent_channels_dubs(tmp_path, monkeypatch):
    """The small-128 layout (8 latent channels) runs end to end; the face is regenerated, the rest kept."""
    video = write_clip(tmp_path / "in.mp4", moving_frames(astronaut(), 320, 240, 10, photo_height=220), rate=25)
    audio = write_wav(tmp_path / "s.mp4", tone(0.4))
    written, boxes_masks = record_writes_and_pastes(monkeypatch)
    KeySyncPipeline(micro_model(latent_channels=8)).dub_file(video, audio, tmp_path / "o.mp4", DubOptions(steps=STEPS, progress=False))
    assert len(written) == 10 and boxes_masks
    outside_paste_region_unchanged(written, video, boxes_masks)


def test_by_default_only_the_face_above_the_jaw_line_is_pasted(tmp_path, pipe, monkeypatch):
    """``paste="jaw"`` pastes part of the regenerated box (not the neck below the jaw); ``"mask"`` all of it."""
    video = write_clip(tmp_path / "in.mp4", moving_frames(astronaut(), 320, 240, 10, photo_height=220), rate=25)
    audio = write_wav(tmp_path / "speech.mp4", tone(0.4))
    pasted = {}
    for region in ("jaw", "mask"):
        written, boxes_masks = record_writes_and_pastes(monkeypatch)
        pipe.dub_file(video, audio, tmp_path / f"{region}.mp4", DubOptions(steps=STEPS, paste=region, progress=False))
        monkeypatch.undo()
        outside_paste_region_unchanged(written, video, boxes_masks)
        pasted[region] = np.stack([mask for j in sorted(boxes_masks) for _, mask in boxes_masks[j]])
    jaw, box = pasted["jaw"], pasted["mask"]
    assert np.all(jaw <= box) and jaw.sum() < 0.9 * box.sum() and jaw.sum() > 0.3 * box.sum()
    assert not jaw[:, -1].any() and box[:, -1].any()  # the box runs to the crop's bottom edge, the jaw paste does not
    with pytest.raises(Exception, match="paste region 'neck'"):
        pipe.dub_file(video, audio, tmp_path / "bad.mp4", DubOptions(steps=STEPS, paste="neck", progress=False))


def test_progress_advances_per_stage(pipe, monkeypatch):
    """Four bars, each counting frames: tracking (source frames), keyframes and interpolation (model frames,
    as each stage finishes a window), writing (output frames)."""
    made = []

    class Bar:
        def __init__(self, iterable=None, total=None, desc=None, **kwargs):
            self.iterable, self.desc, self.n = iterable, desc, 0
            made.append(self)

        def __iter__(self):
            for item in self.iterable:
                self.n += 1
                yield item

        def update(self, n=1):
            self.n += n

        def close(self):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(dub_module, "tqdm", Bar)
    frames = np.stack(list(moving_frames(astronaut(), 320, 240, 20, photo_height=220)))
    out = pipe(frames, tone(0.8), fps=25, steps=1)
    assert len(list(out.frames)) == 20
    assert {bar.desc: bar.n for bar in made} == {"tracking": 20, "keyframes": 20, "interpolation": 20, "writing": 20}


def test_the_vae_decodes_on_a_thread_of_its_own_beside_sampling(pipe, monkeypatch):
    """VAE decoding is a stage of its own: it runs on another thread than the sampler (and the caller), so
    it overlaps the sampling of the next group of latents."""
    import threading

    threads = {"decode": set(), "sample": set()}
    vae, net = pipe.model.vae, pipe.model.interpolation
    decode_frames, forward = vae.decode_frames, net.forward
    monkeypatch.setattr(vae, "decode_frames", lambda *a, **k: threads["decode"].add(threading.get_ident()) or decode_frames(*a, **k))
    monkeypatch.setattr(net, "forward", lambda *a, **k: threads["sample"].add(threading.get_ident()) or forward(*a, **k))
    frames = np.stack(list(moving_frames(astronaut(), 320, 240, 20, photo_height=220)))
    assert len(list(pipe(frames, tone(0.8), fps=25, steps=1, progress=False).frames)) == 20
    assert len(threads["decode"]) == 1 and len(threads["sample"]) == 1
    assert threads["decode"] != threads["sample"] and threading.get_ident() not in threads["decode"] | threads["sample"]


@pytest.mark.parametrize("times", [
    np.arange(40) / 25,  # 25 fps: model frame k shows frame k
    0.5 + np.arange(60) / 30,  # 30 fps from 0.5 s
    np.cumsum(np.random.default_rng(0).uniform(0.01, 0.09, 50)),  # variable frame rate
    np.arange(5) / 25,  # shorter than the ticks: the later ones show the last frame
])
def test_first_keyframe_images_keep_the_frames_the_model_frames_show(times):
    """The frames kept while tracking are those ``plan_model_frames`` has the ticks show, whatever the rate."""
    from keysync.media.frames import plan_model_frames
    from keysync.media.video import Frame

    ticks = list(range(0, 170, 13))
    frames = [Frame(i, float(t), np.full((2, 2, 3), i, np.uint8)) for i, t in enumerate(times)]
    keeper = dub_module.FirstKeyframeImages(iter(frames), ticks)
    assert [f.index for f in keeper] == list(range(len(times)))  # every frame passes through, in order
    plan = plan_model_frames(times)
    shown = sorted({int(plan.source_index[min(k, plan.num_model_frames - 1)]) for k in ticks})
    assert sorted(keeper.images) == shown
    assert keeper.get(shown)[shown[-1]][0, 0, 0] == shown[-1]
    others = [i for i in range(len(times)) if i not in shown]
    assert not others or keeper.get(shown + others[:1]) is None


def test_first_keyframe_images_keep_nothing_past_their_memory(monkeypatch):
    from keysync.media.video import Frame

    monkeypatch.setattr(dub_module.FirstKeyframeImages, "MEMORY", 3 * 12)
    frames = [Frame(i, i / 25, np.zeros((2, 2, 3), np.uint8)) for i in range(60)]
    keeper = dub_module.FirstKeyframeImages(iter(frames), list(range(0, 60, 13)))
    assert len(list(keeper)) == 60
    assert not keeper.complete and keeper.images == {} and keeper.get([0]) is None


def _face(mouth: float, nose: float = 0.0) -> np.ndarray:
    """iBUG 68 landmarks scoring ``nose + 2 * mouth`` as a reference (eye distance 1)."""
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48] = (-0.5, 0.0), (0.5, 0.0)
    lm[30, 0], lm[66, 1] = nose, mouth
    return lm


def test_reference_images_keep_each_tracks_best_frames_and_the_wanted_one(monkeypatch):
    from keysync.faces.tracking import FaceTrack
    from keysync.media.video import Frame

    monkeypatch.setattr(dub_module.ReferenceImages, "PER_TRACK", 2)
    keeper = dub_module.ReferenceImages(wanted=5)
    a, b = FaceTrack(index=0), FaceTrack(index=1)
    mouths_a, mouths_b = [0.5, 0.1, 0.3, 0.05, 0.4, 0.6, 0.2], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    for i in range(7):
        for track, mouth in ((a, mouths_a[i]), (b, mouths_b[i])):
            track.frames.append(i)
            track.landmarks.append(_face(mouth))
        keeper.observe(Frame(i, i / 25, np.full((2, 2, 3), i, np.uint8)), [a, b] if i != 2 else [a])
    assert dub_module.reference_score(np.stack([_face(0.1, 0.25)]))[0] == pytest.approx(0.45)
    assert sorted(keeper.images) == [1, 3, 5, 6]  # a's best two (3, 1), b's (6, 5; b was not seen on 2), the wanted 5
    assert keeper.images[3][0, 0, 0] == 3

    monkeypatch.setattr(dub_module.ReferenceImages, "MEMORY", 2 * 12)  # two of these frames
    keeper._forget()
    assert sorted(keeper.images) == [3, 5]  # the worst-scoring go first; the wanted frame stays


def test_the_reference_comes_from_the_frames_tracking_kept(tmp_path, pipe, monkeypatch):
    """Dubbing while tracking takes the reference frame from the frames tracking kept: nothing is decoded
    again before sampling; with a saved track it is decoded (the frames are the same, as the next test shows)."""
    from keysync.media.seek import FrameFetcher

    video = write_clip(tmp_path / "in.mp4", moving_frames(astronaut(), 320, 240, 30, photo_height=220), rate=25, audio=tone(1.2))
    fetched = []
    real = FrameFetcher.fetch
    monkeypatch.setattr(FrameFetcher, "fetch", lambda self, index: fetched.append(index) or real(self, index))
    tracked = pipe(str(video), str(video), progress=False, steps=STEPS)  # returns before any frame is made
    assert fetched == []
    pipe(str(video), str(video), progress=False, steps=STEPS, face=tracked.location)
    assert len(fetched) == 1  # the reference


def test_keyframes_from_the_frames_tracking_kept_give_the_dub_a_saved_track_gives(tmp_path, pipe, monkeypatch):
    """Dubbing while tracking samples the first window's keyframes from the frames tracking kept, before the
    window is decoded again; with a saved track (no tracking) they are cut from the decoded window, and
    sampled alone too, while the window's other frames are encoded. The frames are the same, bit for bit,
    even with an encoder whose rounding depends on how many crops it is given at once (as a real VAE's may:
    the keyframes' crops are encoded in a batch of their own either way)."""
    from keysync.pipeline.sampling import LatentDubber

    video = write_clip(tmp_path / "in.mp4", moving_frames(astronaut(), 320, 240, 30, photo_height=220), rate=25, audio=tone(1.2))
    encode = pipe.model.vae.encode_frames
    monkeypatch.setattr(pipe.model.vae, "encode_frames", lambda pixels: encode(pixels) + 1e-3 * len(pixels))
    keyframe_rows = []
    real = LatentDubber.sample_keyframes
    monkeypatch.setattr(LatentDubber, "sample_keyframes",
                        lambda self, plan, index, data, anchor: keyframe_rows.append(data.frames) or real(self, plan, index, data, anchor))
    tracked = pipe(str(video), str(video), progress=False, steps=STEPS)
    first = np.stack(list(tracked.frames))
    again = np.stack(list(pipe(str(video), str(video), progress=False, steps=STEPS, face=tracked.location).frames))
    assert keyframe_rows == [(0, 13, 26, 39)] * 2  # the keyframes alone, before the window's other frames are encoded
    assert np.array_equal(first, again)


def test_a_dub_of_later_windows_decodes_only_the_keyframes_of_the_window_before(tmp_path, pipe, monkeypatch):
    """``windows=(1, 2)`` starts from window 0's last keyframe, which window 0's keyframes alone give: only
    their frames (and the reference) are decoded before window 1's, and the frames equal the whole dub's."""
    from keysync.media.seek import FrameFetcher

    video = write_clip(tmp_path / "in.mp4", moving_frames(astronaut(), 128, 96, 100, photo_height=90, amplitude=8), rate=12.5,
                       audio=tone(8.0))
    whole = pipe(str(video), str(video), progress=False, steps=1)
    frames = np.stack(list(whole.frames))
    assert len(whole.window_starts) == 2
    fetched, real = [], FrameFetcher.fetch
    monkeypatch.setattr(FrameFetcher, "fetch", lambda self, index: fetched.append(index) or real(self, index))
    part = pipe(str(video), str(video), progress=False, steps=1, face=whole.location, windows=(1, 2))
    assert np.array_equal(np.stack(list(part.frames)), frames[whole.window_starts[1]:])
    keyframe_sources = {k // 2 for k in range(0, 157, 13)}  # at 12.5 fps model frame k shows frame k // 2; window 1 starts at 156
    assert len(set(i for i in fetched if i < 78) - keyframe_sources) <= 1  # the reference, where it is not a keyframe's


def test_a_bfloat16_pipeline_feeds_its_networks_bfloat16(tmp_path):
    """With ``dtype`` bfloat16 every network input is bfloat16, the reference frame's audio included
    (it was left in float32, and the keyframe stage stopped on the mixed matmul)."""
    import torch

    video = write_clip(tmp_path / "in.mp4", moving_frames(astronaut(), 320, 240, 10, photo_height=220), rate=25)
    pipe = KeySyncPipeline(micro_model(audio_window=1), dtype=torch.bfloat16)
    seen = set()
    for net in (pipe.model.keyframe, pipe.model.interpolation, pipe.model.vae):
        net.register_forward_pre_hook(lambda module, args: seen.update(a.dtype for a in args if isinstance(a, torch.Tensor)))
        for layer in net.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.register_forward_pre_hook(lambda module, args: seen.add(args[0].dtype))
    out = pipe(video, load_audio(write_wav(tmp_path / "s.mp4", tone(0.4))), progress=False, steps=STEPS)
    frames = np.stack(list(out.frames))
    assert frames.shape == (10, 240, 320, 3) and seen == {torch.bfloat16}
