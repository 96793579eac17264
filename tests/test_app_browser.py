"""``keysync app`` in a real browser: Debian's headless Chromium, driven by Playwright, on the page served by
``keysync app`` (a subprocess on a free port of 127.0.0.1). One server and one browser for the module.

The clips come from the synthetic world: two held-out speakers side by side (face 0 on the left, face 1 on
the right) and a third one's speech, cut to 14 frames (one model clip) so that a dub costs a few seconds.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from keysync.app.examples import make_example
from keysync.media.audio import load_audio
from keysync.media.video import probe_video, read_frames
from keysync.synth.clipio import read_wav, write_mp4, write_wav

from .micro import micro_model

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
    checks) besides the shipped `small` one; stopped (SIGTERM) at the end of the module."""
    base = tmp_path_factory.mktemp("server")
    micro_model(audio_window=1).save_pretrained(base / "micro")
    scratch = base / "scratch"
    scratch.mkdir()
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    log = open(base / "server.log", "w")
    child = subprocess.Popen([sys.executable, "-m", "keysync.cli", "app", "--port", str(port), "--temp-dir", str(scratch),
                              "--model", str(base / "micro")], cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        yield {"url": url, "scratch": scratch, "log": base / "server.log", "process": child}
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        log.close()
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


def served_video(page, server, tmp_path, name) -> Path:
    """The result video as the page serves it, fetched over HTTP like the browser does."""
    src = page.locator("#result video").get_attribute("src")
    url = src if src.startswith("http") else server["url"].rstrip("/") + "/" + src.lstrip("/")
    path = tmp_path / name
    with urllib.request.urlopen(url, timeout=30) as response:
        path.write_bytes(response.read())
    return path


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


def session_files(server) -> set[str]:
    return {str(p.relative_to(server["scratch"])) for p in server["scratch"].rglob("*") if "sessions" in p.parts}


def test_two_sessions_queue_in_order_and_cancel_leaves_nothing(server, browser, clips, tmp_path):
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
