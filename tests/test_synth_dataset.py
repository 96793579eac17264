"""`keysync synth`: dataset files, splits disjoint by identity and sentence, byte-identical reruns."""

import json

import numpy as np
import pytest

from keysync.cli import main
from keysync.synth.clipio import read_mp4_frames, read_wav
from keysync.synth.dataset import SPLITS, ClipSpec, load_split, plan_dataset

from .conftest import assert_umask_modes


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    for name, jobs in (("a", "1"), ("b", "2")):
        assert main(["synth", str(root / name), "--clips", "6", "--seed", "3", "--size", "96", "--jobs", jobs]) == 0
    return root / "a", root / "b"


def test_same_seed_gives_byte_identical_files(two_runs):
    a, b = two_runs  # b rendered in two processes
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    assert len(files_a) == 6 * 4 + 1
    assert_umask_modes(a, b)
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_files_hold_the_clip_and_its_ground_truth(two_runs):
    a, _ = two_runs
    records = [r for split in SPLITS for r in load_split(a, split)]
    assert len(records) == 6
    for record in records:
        truth = record.truth()
        frames = read_mp4_frames(record.video)
        T = len(frames)
        assert frames.shape == (T, 96, 96, 3)
        assert truth["mouth"].shape == (T, 5) and truth["landmarks"].shape == (T, 68, 2)
        assert truth["occluder"].shape == (T, 96, 96) and set(np.unique(truth["occluder"])) <= {0, 1}
        assert len(read_wav(record.wav)) == T * 640
        meta = record.meta()
        spec = record.spec()
        assert meta["frames"] == T
        if spec.sound == "speech":
            assert len(record.phonemes()) > 5 and truth["mouth"][:, 0].max() > 0.2
        else:
            assert record.phonemes() == [] and truth["mouth"][:, 0].max() < 0.1


def test_splits_share_no_identity_and_no_sentence(two_runs):
    a, _ = two_runs
    manifest = json.loads((a / "manifest.json").read_text())
    by_split = {s: [c for c in manifest["clips"] if c["split"] == s] for s in SPLITS}
    assert all(by_split[s] for s in SPLITS)
    for i, s in enumerate(SPLITS):
        for t in SPLITS[i + 1 :]:
            assert not {c["identity"] for c in by_split[s]} & {c["identity"] for c in by_split[t]}
            sentences = lambda cs: {c["sentence"] for c in cs if c["sentence"]}  # noqa: E731
            assert not sentences(by_split[s]) & sentences(by_split[t])
    # larger plans keep the disjointness, and every sentence is used once
    specs = plan_dataset(200, 0, 32, 32)
    sentences = [s.sentence for s in specs if s.sentence]
    assert len(sentences) == len(set(sentences))
    ids = {sp: {s.identity_id for s in specs if s.split == sp} for sp in SPLITS}
    looks = {sp: {s.identity.skin[0] for s in specs if s.split == sp} for sp in SPLITS}
    assert not ids["train"] & ids["test"] and not looks["train"] & looks["test"]


def test_a_larger_world_holds_the_smaller_one_clip_for_clip():
    """More clips with the same seed add clips to each split and change none, so a larger train split never
    sees a smaller world's test or val sentences, and benchmarks on its first test clips stay comparable."""
    small, large = plan_dataset(30, 5, 32, 32), plan_dataset(60, 5, 32, 32)
    for split in SPLITS:
        a = [s for s in small if s.split == split]
        b = [s for s in large if s.split == split]
        assert len(b) == 2 * len(a) and b[: len(a)] == a
    held_out = {s.sentence for s in small if s.split != "train" and s.sentence}
    assert held_out and not held_out & {s.sentence for s in large if s.split == "train"}


def test_jaw_drop_keeps_every_other_choice_of_the_plan():
    plain, swinging = plan_dataset(12, 4, 64, 64), plan_dataset(12, 4, 64, 64, jaw_drop=0.66)
    assert [s.identity.jaw_drop for s in swinging] == [0.66] * 12
    for a, b in zip(plain, swinging):
        da, db = a.to_json(), b.to_json()
        assert da["identity"].pop("jaw_drop") == 0.22
        db["identity"].pop("jaw_drop")
        assert da == db
    # the spec file round-trips the setting, and a spec written before it existed reads as the old world
    assert ClipSpec.from_json(swinging[0].to_json()).identity.jaw_drop == 0.66
    old = plain[0].to_json()
    del old["identity"]["jaw_drop"]
    assert ClipSpec.from_json(old) == plain[0]


def test_existing_output_is_refused(two_runs, capsys):
    a, _ = two_runs
    before = sorted(p.name for p in a.iterdir())
    assert main(["synth", str(a), "--clips", "2"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.name for p in a.iterdir()) == before
    assert main(["synth", str(a.parent / "c"), "--clips", "0"]) == 1
    assert main(["synth", str(a.parent / "c"), "--jaw-drop", "2"]) == 1
    assert "--jaw-drop" in capsys.readouterr().err
    assert not (a.parent / "c").exists()
