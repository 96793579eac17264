"""`keysync batch --split-long`: a long video tracked once, dubbed in pieces by two workers, joined without a
seam or audio drift (docs/batch.md)."""

import json

import numpy as np

from keysync.batch.split import choose_pieces
from keysync.cli import main
from keysync.media.source import VideoSource
from keysync.media.video import probe_video
from keysync.media.writer import VideoWriter
from keysync.models import KeySyncModel
from keysync.pipeline.dub import DubOptions, KeySyncPipeline

from .batch_catalogue import catalogue
from .faces_media_clips import astronaut, moving_frames, tone, write_clip, write_wav
from .test_batch_local import journal

SECONDS = 14.0  # 350 model frames: 3 sampling windows of 169 frames (6.76 s), so 3 pieces; benchmarks/batch.py runs 30 s


def test_cuts_go_to_shot_cuts_else_to_the_quietest_boundary_and_pieces_stay_short():
    starts = np.arange(10) * 6.76  # ten windows of 6.76 s
    end = 67.6
    assert choose_pieces(starts, end, 100.0) == [(0, 10)]  # short enough: one piece
    loud = np.ones(int(end * 16000), np.float32)
    pieces = choose_pieces(starts, end, 20.0, audio=loud)
    assert all(starts[b] - starts[a] <= 20.0 for a, b in pieces[:-1]) and end - starts[pieces[-1][0]] <= 20.0
    assert pieces == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]  # equal loudness: the earliest boundary past half the span
    quiet = loud.copy()
    quiet[int(starts[3] * 16000) - 3200 : int(starts[3] * 16000) + 3200] = 0  # silence around the boundary at 20.28 s
    assert choose_pieces(starts, end, 21.0, audio=quiet)[0] == (0, 3)
    assert choose_pieces(starts, end, 21.0, shot_times=[13.55], audio=quiet)[0] == (0, 2)  # a shot cut wins over silence
    assert choose_pieces(starts, end, 3.0) == [(i, i + 1) for i in range(10)]  # a window longer than S is a piece of its own


def test_a_clip_in_3_pieces_on_2_workers_equals_the_unsplit_dub(tmp_path_factory, tmp_path, capsys, monkeypatch):
    """The joins differ from the unsplit dub by less than two seeds differ elsewhere, and the joined file
    has the unsplit output's frames, timestamps and soundtrack length. A join that fails (a full disk) is
    journaled as the job's failure and keeps the pieces, which the next run joins without dubbing again."""
    root = catalogue(tmp_path_factory)
    # 12.5 fps: half the frames to track and paste; the model still makes 25 frames a second (350)
    frames = list(moving_frames(astronaut(), 128, 96, int(SECONDS * 12.5), photo_height=90, amplitude=8))
    video = write_clip(tmp_path / "long.mp4", frames, rate=12.5)
    speech = write_wav(tmp_path / "speech.mp4", tone(SECONDS))
    (tmp_path / "jobs.csv").write_text("video,audio,steps,seed,crf\nlong.mp4,speech.mp4,1,0,0\n")
    out = tmp_path / "out"
    command = ["batch", str(tmp_path / "jobs.csv"), "-o", str(out), "--model", str(root / "micro"), "--workers", "2",
               "--split-long", "7", "--quiet"]
    import keysync.media.writer

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keysync.media.writer, "join_videos", disk_full)
    assert main(command) == 1
    printed = capsys.readouterr().out
    assert "0 done, 1 failed, 0 already done, of 1 jobs" in printed and "piece(s) of long videos" in printed
    assert "failed: row 1 long.mp4: joining the pieces failed: [Errno 28] No space left on device" in printed
    assert journal(out)[-1] == {**journal(out)[-1], "job": "long.mp4", "status": "failed"}
    kept = out.parent / "out.keysync-batch" / "pieces"
    assert len(list(kept.glob("*/piece-*"))) == 3 and not (out / "long.mp4").exists()
    monkeypatch.undo()
    failed_run = len(journal(out))
    assert main(command) == 0  # the kept pieces are joined; nothing is tracked or dubbed again
    assert "1 done, 0 failed, 0 already done, of 1 jobs" in capsys.readouterr().out
    records = journal(out)
    assert [(r["job"], r["status"]) for r in records[failed_run:]] == [("long.mp4", "done")]
    (tracking,) = [r for r in records if r["job"] == "long.mp4 [tracking]" and r["status"] == "done"]
    assert tracking["pieces"] == [[0, 1], [1, 2], [2, 3]]  # 6.28 s (the first window makes 157 frames), 6.76 s, 0.96 s
    pieces = {r["job"]: r["worker"] for r in records if "[piece" in r["job"] and r["status"] == "done"}
    assert sorted(pieces) == [f"long.mp4 [piece {i}]" for i in range(3)] and len(set(pieces.values())) == 2  # both workers
    assert not (out.parent / "out.keysync-batch" / "pieces").exists() or not any((out.parent / "out.keysync-batch" / "pieces").iterdir())

    # on all cores, where each worker had 1 thread: float sums in another order move a pixel by 1 at most
    pipe = KeySyncPipeline(KeySyncModel.from_pretrained(root / "micro"))
    whole = pipe(str(video), str(speech), options=DubOptions(steps=1, seed=0, progress=False))
    unsplit = np.stack(list(whole.frames)).astype(np.int16)
    other_seed = pipe(str(video), str(speech), options=DubOptions(steps=1, seed=1, progress=False), face=whole.location,
                      windows=(0, 1))
    seed_diff = np.abs(np.stack(list(other_seed.frames)).astype(np.int16) - unsplit[: len(other_seed.times)]).mean(axis=(1, 2, 3))

    with VideoWriter(tmp_path / "unsplit.mp4", 128, 96, rate=12.5, crf=0) as writer:  # as the pieces are encoded
        for time, image in zip(whole.times, unsplit.astype(np.uint8)):
            writer.write(image, float(time))
    unsplit_file = np.stack([f.image for f in VideoSource(tmp_path / "unsplit.mp4").frames()]).astype(np.int16)
    joined = [(f.time, f.image) for f in VideoSource(out / "long.mp4").frames()]
    assert np.allclose([t for t, _ in joined], whole.times)  # every frame, at the unsplit output's timestamps
    diff = np.abs(np.stack([im for _, im in joined]).astype(np.int16) - unsplit_file).mean(axis=(1, 2, 3))
    joins = whole.window_starts[[1, 2]]  # the first frame of pieces 1 and 2
    at_joins = diff[np.concatenate([np.arange(j - 2, j + 2) for j in joins])]
    elsewhere = seed_diff[3:-3]  # two seeds, away from those joins
    assert at_joins.max() <= 0.01 * elsewhere.mean(), (at_joins, elsewhere.mean())  # lossless H.264 (crf 0): the same frames
    assert diff.max() <= 0.01 * elsewhere.mean()  # and so everywhere
    info = probe_video(out / "long.mp4")
    assert info.frame_count == len(whole.times) and abs(info.duration - SECONDS) < 0.05
    from keysync.media.audio import load_audio

    assert info.has_audio and abs(len(load_audio(out / "long.mp4")) - len(whole.audio)) < 0.05 * 16000

    stamp = (out / "long.mp4").stat().st_mtime_ns
    assert main(command) == 0  # done: nothing tracked or dubbed again
    assert "0 done, 0 failed, 1 already done, of 1 jobs" in capsys.readouterr().out
    assert (out / "long.mp4").stat().st_mtime_ns == stamp and len(journal(out)) == len(records)
    assert json.loads((out.parent / "out.keysync-batch" / "journal.jsonl").read_text().splitlines()[-1])["status"] == "done"
