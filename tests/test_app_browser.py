"""``keysync app`` in a real browser: Debian's headless Chromium, driven by Playwright, on the page served by
``keysync app`` (a subprocess on a free port of 127.0.0.1). One server and one browser for the module; the
page of a server without SAM 2 is served in-process.

The clips come from the synthetic world: two held-out speakers side by side (face 0 on the left, face 1 on
the right) and a third one's speech, cut to 14 frames (one model clip) so that a dub costs a few seconds.
"""

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from keysync.app.examples import make_example
from keysync.app.page import OCCLUDER_OFF
from keysync.media.audio import load_audio
from keysync.media.video import probe_video, read_frames
from keysync.synth.clipio import read_wav, write_mp4, write_wav

from .micro import micro_model, micro_segmenter

pytest.importorskip("gradio", reason='the page needs its extra: pip install -e ".[app]"')
pytest.importorskip("playwright", reason="the browser tests need Playwright's client: pip install playwright")

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"  # Debian's package (`apt-get install -y chromium`); Playwright's own builds are never fetched
SPEECH_FRAMES = 14  # 0.56 s: one model clip
TIMEOUT_MS = int(os.environ.get("APP_TEST_TIMEOUT_MS", 240_000))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    video, speech = make_example(folder, seconds=1.0, size=128)
    short = write_speech(folder / "speech-0.56s.wav", read_wav(speech)[: SPEECH_FRAMES * 640])
    grey = folder / "grey.mp4"
    write_mp4(grey, np.full((10, 96, 128, 3), 120, np.uint8))
    return {"two_faces": video, "speech": short, "no_face": grey}


def write_speech(path, audio):
    write_wav(path, audio)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``keysync app`` with a micro random-weight model folder (`micro`, for the cheap queue and cancel
    checks) besides the shipped `small` one, and a micro random-weight SAM 2 (``--segmenter``; 64 px, its
    masks mean nothing, they only have to match the CLI's); stopped (SIGTERM) at the end of the module."""
    base = tmp_path_factory.mktemp("server")
    micro_model(audio_window=1).save_pretrained(base / "micro")
    micro_segmenter(base / "sam2")
    with serving(base, ["--model", str(base / "micro"), "--segmenter", str(base / "sam2")]) as running:
        yield dict(running, micro=base / "micro", segmenter=base / "sam2")


@contextlib.contextmanager
def serving(base: Path, args: list[str], **env):
    scratch = base / "scratch"
    scratch.mkdir()
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", **env)
    with open(base / "server.log", "w") as log:
        child = subprocess.Popen([sys.executable, "-m", "keysync.cli", "app", "--port", str(port), "--temp-dir", str(scratch), *args],
                                 cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        try:
            yield {"url": url, "scratch": scratch, "log": base / "server.log", "process": child, "env": env}
        finally:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    assert not list(scratch.iterdir()), "the server left its scratch folder behind"


def wait_until_serving(server) -> None:
    """The server starts while the clips are made; a page opens once it answers."""
    deadline = time.monotonic() + 180
    while not answers(server["url"]):
        assert server["process"].poll() is None, server["log"].read_text()
        assert time.monotonic() < deadline, "keysync app did not answer in 180 s"
        time.sleep(0.3)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


def open_page(browser, server):
    wait_until_serving(server)
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server["url"])
    page.locator("#dub").wait_for()
    return page


def choose(page, dropdown: str, option: str):
    page.locator(f"#{dropdown} input").click()
    page.get_by_role("option", name=option).click()


def fill_in(page, clips, video, model, steps=1, short_audio="trim"):
    """Upload the video and the speech, pick the model, the steps and the short-audio policy."""
    page.locator("#video input[type=file]").set_input_files(str(video))
    page.locator("#speech input[type=file]").set_input_files(str(clips["speech"]))
    choose(page, "model", model)
    page.locator("#steps input").fill(str(steps))
    page.locator("#short-audio").get_by_text(short_audio, exact=True).click()


def status(page) -> str:
    return page.locator("#status textarea").input_value()


def wait_status(page, prefixes, timeout=TIMEOUT_MS / 1000) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = status(page)
        if text.startswith(prefixes):
            return text
        time.sleep(0.2)
    raise AssertionError(f"status never began with {prefixes}; it says {status(page)!r}")


def served_video(page, server, tmp_path, name, element="#result video") -> Path:
    """The result video (or another element's file) as the page serves it, fetched over HTTP like the browser does."""
    src = page.locator(element).get_attribute("src")
    url = src if src.startswith("http") else server["url"].rstrip("/") + "/" + src.lstrip("/")
    path = tmp_path / name
    with urllib.request.urlopen(url, timeout=30) as response:
        path.write_bytes(response.read())
    return path


def gone_within(paths, seconds=30.0) -> float:
    """Seconds until none of ``paths`` exists; fails after ``seconds``."""
    started = time.monotonic()
    while any(p.exists() for p in paths):
        assert time.monotonic() < started + seconds, f"still there {seconds:.0f} s after the tab closed: {[p for p in paths if p.exists()]}"
        time.sleep(0.1)
    return time.monotonic() - started


def test_dub_face_1_with_the_small_model(server, browser, clips, tmp_path):
    page = open_page(browser, server)
    fill_in(page, clips, clips["two_faces"], "small")
    page.locator("#faces img").wait_for()  # the faces step: the first frame, faces boxed and numbered
    assert wait_status(page, ("2 face(s) found", "error")) == "2 face(s) found"
    choose(page, "face", "face 1: frames 0-24")
    page.locator("#dub").click()
    done = wait_status(page, ("done", "error"))
    assert done.startswith("done: 256x128, 14 frames"), done
    page.screenshot(path=str(tmp_path / "dubbed.png"), full_page=True)

    out = served_video(page, server, tmp_path, "dubbed.mp4")
    info = probe_video(out)
    assert (info.width, info.height) == (256, 128)  # the input's size
    frames = np.stack([f.image for f in read_frames(out)]).astype(int)
    assert len(frames) == SPEECH_FRAMES  # --short-audio trim: the video cut to the new speech
    assert load_audio(out).shape[0] == pytest.approx(SPEECH_FRAMES * 640, abs=1024)  # the new audio's length (AAC frames)
    source = np.stack([f.image for f in read_frames(clips["two_faces"])][:SPEECH_FRAMES]).astype(int)
    left, right = np.abs(frames - source)[..., :128, :].mean(), np.abs(frames - source)[..., 128:, :].mean()
    assert left < 2 < right  # face 1 (right) was regenerated, face 0 (left) only re-encoded
    page.close()


def test_a_video_without_a_face_is_one_line_on_the_page(server, browser, clips, tmp_path):
    page = open_page(browser, server)
    fill_in(page, clips, clips["no_face"], "micro")
    message = "error: no face found in grey.mp4; give a video in which the speaker's face is visible"
    assert wait_status(page, ("error", "done", "1 face")) == message  # the faces step says it first
    page.locator("#dub").click()
    wait_status(page, ("loading", "dubbing", "done"), timeout=10)  # the dub's own run, then its error
    assert wait_status(page, ("error", "done")) == message
    assert "Traceback" not in page.content()
    page.screenshot(path=str(tmp_path / "error.png"), full_page=True)
    assert answers(server["url"]) and server["process"].poll() is None  # still serving
    page.close()


def session_files(server) -> set[str]:
    return {str(p.relative_to(server["scratch"])) for p in server["scratch"].rglob("*") if "sessions" in p.parts}


def folder_of(server, name) -> Path:
    """The session folder holding the file ``name`` (a result)."""
    (found,) = list(server["scratch"].rglob(name))
    return Path(*found.parts[: found.parts.index("sessions") + 2])


def test_two_sessions_queue_in_order_cancel_and_closing_leave_nothing(server, browser, clips, tmp_path):
    second_video = tmp_path / "second.mp4"  # the same clip under another name, to tell the jobs apart in the server's log
    second_video.write_bytes(clips["two_faces"].read_bytes())
    first, second = open_page(browser, server), open_page(browser, server)  # two tabs: two sessions
    for page, video in ((first, clips["two_faces"]), (second, second_video)):
        fill_in(page, clips, video, "micro")
        wait_status(page, ("2 face(s) found", "error"))
    first.locator("#dub").click()
    wait_status(first, ("loading", "dubbing", "done", "error"))
    second.locator("#dub").click()
    queued = second.get_by_text(re.compile(r"queue: \d+/\d+")).first
    queued.wait_for()
    position = queued.inner_text()
    second.screenshot(path=str(tmp_path / "queued.png"), full_page=True)
    assert position.startswith("queue: 1/")  # first in line while the other session's job runs
    assert wait_status(first, ("done", "error")).startswith("done: 256x128, 14 frames")
    assert wait_status(second, ("done", "error")).startswith("done: 256x128, 14 frames")
    jobs = re.findall(r"keysync app: (two-speakers.mp4|second.mp4) with micro: (started|done)", server["log"].read_text())
    assert jobs == [("two-speakers.mp4", "started"), ("two-speakers.mp4", "done"), ("second.mp4", "started"), ("second.mp4", "done")]

    before = session_files(server)
    first.locator("#dub").click()
    wait_status(first, ("loading", "dubbing"))
    first.locator("#cancel").click()
    assert wait_status(first, ("cancelled", "done", "error")) == "cancelled"
    deadline = time.monotonic() + 60
    while session_files(server) != before and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1)
    assert session_files(server) == before  # the cancelled job's folder and partial output are gone
    assert not [p for p in server["scratch"].rglob("*") if "partial" in p.name]
    assert "two-speakers.mp4 with micro: stopped, its files removed" in server["log"].read_text()

    # closing a tab ends its session: its folder (previews, results) goes, and its uploads once no open
    # session uses them (both tabs uploaded the same bytes: one upload folder)
    first_folder, second_folder = folder_of(server, "two-speakers-dubbed.mp4"), folder_of(server, "second-dubbed.mp4")
    (uploads,) = {p.parent for p in server["scratch"].rglob("second.mp4") if "sessions" not in p.parts}
    second.close()
    print(f"closed tab: its folder removed in {gone_within([second_folder]):.1f} s")
    assert first_folder.is_dir() and (uploads / "two-speakers.mp4").is_file()  # the other session keeps its own, and the upload
    # a tab closed while its job runs (the case Gradio's unload raced with): its job stops and nothing is left
    first.locator("#dub").click()
    wait_status(first, ("loading", "dubbing", "done"))
    first.close()
    print(f"tab closed during a job: its folder and upload removed in {gone_within([first_folder, uploads]):.1f} s")
    time.sleep(1)  # the job's step in progress ends: nothing comes back
    assert not [p for p in server["scratch"].rglob("*") if p.is_file()], "a closed session's file is left"


def click_image(page, element: str, x: int, y: int) -> None:
    """Click pixel (x, y) of the picture shown in ``element``, placed as Gradio's image places it (scaled to
    fit, centred, never enlarged)."""
    img = page.locator(f"{element} img")
    width, height, natural_w, natural_h = img.evaluate("""img => { const r = img.getBoundingClientRect();
        return [r.width, r.height, img.naturalWidth, img.naturalHeight]; }""")
    scale = min(width / natural_w, height / natural_h, 1)
    img.click(position={"x": (width - natural_w * scale) / 2 + (x + 0.5) * scale, "y": (height - natural_h * scale) / 2 + (y + 0.5) * scale})


def wait_value(page, element: str, check, timeout=30.0) -> str:
    deadline = time.monotonic() + timeout
    while not check(value := page.locator(f"{element} textarea").input_value()):
        assert time.monotonic() < deadline, f"{element} says {value!r}"
        time.sleep(0.1)
    return value


def wait_src(page, element: str, part: str, timeout=30.0) -> None:
    deadline = time.monotonic() + timeout
    while part not in (page.locator(f"{element} img").get_attribute("src") or ""):
        assert time.monotonic() < deadline, f"{element} never showed {part}: {page.locator(f'{element} img').get_attribute('src')}, status {status(page)!r}"
        time.sleep(0.1)


# `keysync` commands (JSON lists of arguments, one line on stdin) in a process started before they are known
CLI = """import json, sys
import mediapipe, torch, transformers.models.sam2_video, keysync.pipeline.dub, keysync.faces.occluders  # while the page is driven
from keysync.cli import main
sys.exit(max(main(run) for run in json.loads(sys.stdin.readline())))
"""


def test_occluder_clicks_keep_the_tracked_occluder_as_the_cli_does(server, browser, clips, tmp_path):
    """Click an occluder on frame 3 (a point on it, one off it, cleared once on the way) and dub: the page's job
    tracks it with SAM 2 into the same masks as `keysync occluders`, and its video equals `keysync dub
    --occluder-point ... --segmenter` on the same inputs (the CLI runs meanwhile, in its own process)."""
    cli = subprocess.Popen([sys.executable, "-c", CLI], stdin=subprocess.PIPE, text=True, env=server["env"], cwd=tmp_path)
    try:
        clicks_and_dub(server, browser, clips, tmp_path, cli)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()


def clicks_and_dub(server, browser, clips, tmp_path, cli):
    page = open_page(browser, server)
    assert page.locator("#occluders").count() == 0  # the reason line is only for a server without SAM 2 (below)
    fill_in(page, clips, clips["two_faces"], "micro")
    assert wait_status(page, ("2 face(s) found", "error")) == "2 face(s) found"
    wait_src(page, "#occluder-image", "frame-0-")  # a new video's frame 0 (and the frame slider set for it)
    page.locator("#occluder-frame input[type=number]").fill("3")
    page.locator("#occluder-frame input[type=number]").press("Tab")  # released: the frame to click on is frame 3
    wait_src(page, "#occluder-image", "frame-3-")

    click_image(page, "#occluder-image", 190, 90)
    on = wait_value(page, "#clicks", lambda v: "--occluder-point" in v)
    page.locator("#click-kind").get_by_text("not the occluder", exact=True).click()
    click_image(page, "#occluder-image", 60, 80)
    both = wait_value(page, "#clicks", lambda v: "--occluder-negative" in v)
    page.locator("#clear-clicks").click()
    wait_value(page, "#clicks", lambda v: v == "")
    wait_src(page, "#occluder-image", "frame-3-")  # the frame without marks
    page.locator("#click-kind").get_by_text("on the occluder", exact=True).click()
    click_image(page, "#occluder-image", 190, 90)
    wait_value(page, "#clicks", lambda v: v == on)
    page.locator("#click-kind").get_by_text("not the occluder", exact=True).click()
    click_image(page, "#occluder-image", 60, 80)
    options = wait_value(page, "#clicks", lambda v: v == both)
    words = options.split()
    point, negative = [int(v) for v in words[3].split(",")], [int(v) for v in words[5].split(",")]
    assert words[:2] == ["--occluder-frame", "3"] and words[2] == "--occluder-point" and words[4] == "--occluder-negative"
    assert abs(point[0] - 190) <= 1 and abs(point[1] - 90) <= 1 and abs(negative[0] - 60) <= 1 and abs(negative[1] - 80) <= 1
    page.screenshot(path=str(tmp_path / "occluder.png"), full_page=True)
    marked = served_video(page, server, tmp_path, "marked.png", "#occluder-image img")
    pixels = cv2.cvtColor(cv2.imread(str(marked)), cv2.COLOR_BGR2RGB).astype(int)
    assert pixels.shape == (128, 256, 3)  # the frame at the video's size, the clicks marked on it
    assert pixels[point[1], point[0], 1] > 150 > pixels[point[1], point[0], 0]  # green on the occluder
    assert pixels[negative[1], negative[0], 0] > 150 > pixels[negative[1], negative[0], 1]  # red off it

    # the CLI on the same inputs, in a process like the server's (started beforehand: imports done), while the page dubs
    cli_out, cli_masks = tmp_path / "cli.mp4", tmp_path / "cli-masks.npy"
    segmenter = ["--segmenter", str(server["segmenter"])]
    runs = [["occluders", str(clips["two_faces"]), "-o", str(cli_masks), "--frame", "3", "--point", words[3], "--negative", words[5], *segmenter],
            ["dub", str(clips["two_faces"]), str(clips["speech"]), "-o", str(cli_out), "--model", str(server["micro"]), "--steps", "1",
             "--short-audio", "trim", "--quiet", *segmenter, *words]]
    cli.stdin.write(json.dumps(runs) + "\n")
    cli.stdin.close()
    page.locator("#dub").click()
    done = wait_status(page, ("done", "error"))
    assert done.startswith("done: 256x128, 14 frames") and "(the occluder clicked on frame 3 kept from the source)" in done, done
    assert cli.wait(TIMEOUT_MS / 1000) == 0

    (masks,) = list(server["scratch"].rglob("occluders.npy"))  # what the page's job tracked and dub read
    masks, expected = np.load(masks), np.load(cli_masks)
    assert masks.shape == (25, 128, 256) and 0 < masks.mean() < 1  # random SAM 2 weights: some arbitrary region
    assert np.array_equal(masks, expected)  # the same masks as `keysync occluders` with these clicks
    page_frames = np.stack([f.image for f in read_frames(served_video(page, server, tmp_path, "page.mp4"))])
    cli_frames = np.stack([f.image for f in read_frames(cli_out)])
    assert np.array_equal(page_frames, cli_frames)  # the same video as `keysync dub --occluder-point`
    page.close()


def test_without_sam2_the_occluder_control_is_hidden_and_one_line_says_why(browser, tmp_path, monkeypatch):
    """The page of a server that has no SAM 2 (`keysync app` without --segmenter and none in the Hugging Face
    cache: test_app_cli), served in-process: no occluder control, and one line saying how to enable it."""
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    from keysync.app.commands import model_choices
    from keysync.app.page import Server, build_page

    demo = build_page(Server(model_choices([]), tmp_path, segmenter=None))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, ssr_mode=False, quiet=True)
    try:
        page = open_page(browser, {"url": f"http://127.0.0.1:{port}/"})
        assert page.locator("#occluder").count() == 0 and page.locator("#occluder-image").count() == 0 and page.locator("#clicks").count() == 0
        assert page.locator("#occluders").inner_text().strip() == OCCLUDER_OFF.replace("`", "")
        page.screenshot(path=str(tmp_path / "no-sam2.png"), full_page=True)
        page.close()
    finally:
        demo.close()
