"""The bin-check page's logic: each photo through the endpoint's hooks, its card, and bad uploads as messages."""

from __future__ import annotations

import json
import signal
from contextlib import contextmanager

import pytest

from core.cli import UserError
from inference import app, handler
from tests.test_handler import FIXED, b64, bomb, fixed, image_bytes

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@contextmanager
def ctrl_c_passed_on():
    """A child inherits an ignored or blocked SIGINT, and some library in this test process can leave it so (seen in
    the full suite: the page never saw Ctrl+C); the page is started the way a terminal starts it."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return fixed(handler.model_fn(str(tiny_model_dir)), FIXED)


@pytest.fixture
def photos(tmp_path):
    paths = {"bin.jpg": image_bytes(), "notes.txt": b"not a photo", "bomb.png": bomb(),
             "half.jpg": image_bytes()[:2000]}
    for name, data in paths.items():
        (tmp_path / name).write_bytes(data)
    return {name: str(tmp_path / name) for name in paths}


def test_a_photo_gets_the_endpoints_answer_and_a_card(model, photos):
    cards, answers = app.check_bins(model, [photos["bin.jpg"]], "3")
    expected = handler.predict_fn(handler.input_fn(json.dumps(
        {"inputs": b64(image_bytes()), "parameters": {"expected_quantity": 3}}), "application/json"), model)
    assert answers == [{"file": "bin.jpg", **expected}]
    assert expected["verdict"] == "match" and expected["count"] == 3
    assert 'data-count="3"' in cards and 'data-verdict="match"' in cards
    bars = {label: f'data-label="{label}" data-probability="{p:.6f}"' for label, p in zip(map(str, range(6)), FIXED)}
    assert all(bar in cards for bar in bars.values())


@pytest.mark.parametrize("quantities, verdicts", [("0", ["mismatch", "mismatch"]), ("3, 4", ["match", "uncertain"]),
                                                  ("-, 9", [None, "uncertain"]), ("", [None, None])])
def test_recorded_quantities_one_for_all_or_one_per_photo(model, photos, quantities, verdicts):
    _, answers = app.check_bins(model, [photos["bin.jpg"]] * 2, quantities)
    assert [a.get("verdict") for a in answers] == verdicts


@pytest.mark.parametrize("text, message", [("3, 2, 1", "one per photo (2)"), ("two", "whole number"),
                                           ("-1", "whole number")])
def test_bad_quantities_are_a_message(model, photos, text, message):
    cards, answers = app.check_bins(model, [photos["bin.jpg"]] * 2, text)
    assert answers == [] and message in cards and "bin-error" in cards


def test_bad_uploads_are_messages_and_the_good_photos_still_answered(model, photos, monkeypatch):
    monkeypatch.setenv("BINCOUNT_MAX_IMAGE_PIXELS", "40000000")
    order = ["notes.txt", "bin.jpg", "bomb.png", "half.jpg"]
    cards, answers = app.check_bins(model, [photos[name] for name in order], "3")
    errors = {a["file"]: a.get("error") for a in answers}
    assert errors["bin.jpg"] is None and answers[1]["verdict"] == "match"
    assert errors["notes.txt"] == "notes.txt is not an image (JPEG, PNG, WEBP, BMP, GIF, TIFF)"
    assert "bomb.png" in errors["bomb.png"] and "8000x6000" in errors["bomb.png"]
    assert errors["half.jpg"].startswith("half.jpg is corrupt or truncated")
    assert cards.count('class="bin-error"') == 3 and cards.count('class="bin-result"') == 1


def test_a_photo_over_the_body_limit_is_refused_unread(model, photos, monkeypatch):
    monkeypatch.setenv("BINCOUNT_MAX_BODY_BYTES", "4000")
    _, answers = app.check_bins(model, [photos["bin.jpg"]], None)
    assert "too large" in answers[0]["error"] and "2850 bytes" in answers[0]["error"]


def test_no_photos_is_a_message(model):
    assert app.check_bins(model, None, "3") == ('<p class="bin-error">Drop one or more bin photos first.</p>', [])


def test_names_are_escaped_in_cards():
    card = app.render(app.Checked("<b>x</b>.jpg", error="<b>x</b>.jpg is not an image"))
    assert "<b>" not in card and "&lt;b&gt;x&lt;/b&gt;.jpg" in card


def test_a_model_that_is_neither_a_folder_nor_on_the_hub_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="config.json"):
        app.load_model(str(tmp_path))
    assert app.main(["--model", str(tmp_path / "missing"), "--port", "1"]) == 2


def test_examples_must_be_a_folder_of_photos(tmp_path):
    with pytest.raises(UserError, match="no photos"):
        app.example_photos(str(tmp_path))
    (tmp_path / "b.jpg").write_bytes(image_bytes())
    assert app.example_photos(str(tmp_path)) == [str(tmp_path / "b.jpg")]


def test_one_command_serves_the_page_and_ctrl_c_stops_it(tiny_model_dir, tmp_path):
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from tests.conftest import python_env

    pytest.importorskip("gradio", reason="gradio is not installed (requirements-app.txt)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "bin.jpg").write_bytes(image_bytes())
    with ctrl_c_passed_on():
        page = subprocess.Popen([sys.executable, "-m", "inference.app", "--model", str(tiny_model_dir), "--port",
                                 str(port), "--examples", str(tmp_path)],
                                env=python_env(GRADIO_ANALYTICS_ENABLED="False"), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    try:
        deadline, html = time.monotonic() + 240, None
        while html is None and time.monotonic() < deadline and page.poll() is None:
            try:
                html = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
            except OSError:
                time.sleep(1)
        assert html is not None, page.communicate(timeout=30)[0][-3000:] if page.poll() is not None else "no page"
        assert "Bin check" in html and "bin.jpg" in html  # the title and the example
    finally:
        page.send_signal(signal.SIGINT)
        output = page.communicate(timeout=60)[0]
    assert f"bin check page on http://127.0.0.1:{port}/" in output


def test_ctrl_c_while_the_page_is_still_starting_stops_it(tiny_model_dir, tmp_path):
    """Ctrl+C as soon as the port opens lands inside Gradio's launch, before its own wait loop: the page must still
    stop, not hang on its server thread."""
    import socket
    import subprocess
    import sys
    import time

    from tests.conftest import python_env

    pytest.importorskip("gradio", reason="gradio is not installed (requirements-app.txt)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with ctrl_c_passed_on():
        page = subprocess.Popen([sys.executable, "-m", "inference.app", "--model", str(tiny_model_dir), "--port",
                                 str(port)], env=python_env(GRADIO_ANALYTICS_ENABLED="False"),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and page.poll() is None:
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.02)
    finally:
        page.send_signal(signal.SIGINT)
        output = page.communicate(timeout=60)[0]
    assert page.returncode == 0, output[-3000:]
