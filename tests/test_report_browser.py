"""The HTML report in a real browser: Debian's headless Chromium loads it from file with no console errors, makes
no network request, and its screenshot is not blank.

Chromium is driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages separated by NUL
bytes on file descriptors 3 and 4), so no websocket client is needed.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import selectors
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import CampaignRun
from PIL import Image

from reports.examples import read_examples
from reports.html import render_html, sections

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian chromium is not installed (apt-get install -y chromium); CI installs it"
)
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe")
TIMEOUT_S = 60.0
EVIL = "<script>alert(1)</script>"


class DevToolsPipe:
    """A browser-level DevTools session over Chromium's pipe transport."""

    def __init__(self, chromium: str, profile: Path, log: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # The browser reads commands on fd 3 and writes replies on fd 4; bash moves our pipe ends there (dash
        # cannot redirect from descriptors above 9).
        script = f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w}'
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(
                ["bash", "-c", script, chromium, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                pass_fds=(to_browser_r, from_browser_w), stdout=subprocess.DEVNULL, stderr=stderr,
            )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        selector = selectors.DefaultSelector()
        selector.register(self._from_browser, selectors.EVENT_READ)
        try:
            while b"\0" not in self._buffer:
                if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    raise TimeoutError("Chromium did not answer in time")
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise ConnectionError("Chromium closed the DevTools pipe")
                self._buffer += chunk
        finally:
            selector.close()
        message, _, self._buffer = self._buffer.partition(b"\0")
        return dict(json.loads(message))

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._next_id += 1
        request: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            request["sessionId"] = session
        os.write(self._to_browser, json.dumps(request).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            message = self._read_message(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))
            self.events.append(message)

    def wait_for(self, method: str, session: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not any(e.get("method") == method and e.get("sessionId") == session for e in self.events):
            self.events.append(self._read_message(deadline))

    def close(self) -> None:
        with contextlib.suppress(OSError, ConnectionError, TimeoutError, RuntimeError):
            self.call("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevToolsPipe]:
    """One browser for the module, with a fresh profile; each page gets its own tab."""
    assert CHROMIUM is not None
    tmp = tmp_path_factory.mktemp("chromium")
    pipe = DevToolsPipe(CHROMIUM, tmp / "profile", tmp / "chromium.log")
    yield pipe
    pipe.close()


PAGE_FACTS = """JSON.stringify({
  title: document.title,
  scripts: document.scripts.length,
  images: document.images.length,
  broken: [...document.images].filter(i => !i.complete || i.naturalWidth === 0).length,
})"""


def load_page(browser: DevToolsPipe, page: Path) -> tuple[list[str], list[str], dict[str, Any], np.ndarray]:
    """Open ``page`` from file; return (problems the page reported, URLs it requested, facts about its DOM,
    screenshot RGB)."""
    target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.call(f"{domain}.enable", session=session)
    browser.call("Emulation.setDeviceMetricsOverride",
                 {"width": 1280, "height": 1600, "deviceScaleFactor": 1, "mobile": False}, session=session)
    browser.events.clear()
    browser.call("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
    browser.wait_for("Page.loadEventFired", session)
    facts = json.loads(browser.call("Runtime.evaluate", {"expression": PAGE_FACTS}, session=session)["result"]["value"])
    shot = browser.call("Page.captureScreenshot", {"format": "png"}, session=session)
    browser.call("Target.closeTarget", {"targetId": target})
    problems, requested = [], []
    for event in browser.events:
        if event.get("sessionId") != session:
            continue
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            problems.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            problems.append(f"console.{params['type']}: {[a.get('value') for a in params.get('args', [])]}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            problems.append(f"log {params['entry'].get('source')}: {params['entry'].get('text')}")
        elif method == "Network.requestWillBeSent":
            requested.append(params["request"]["url"])
        elif method == "Network.loadingFailed":
            problems.append(f"failed to load: {params.get('errorText')}")
    with Image.open(io.BytesIO(base64.b64decode(shot["data"]))) as image:
        pixels = np.asarray(image.convert("RGB"))
    return problems, requested, facts, pixels


@pytest.mark.slow
@pytest.mark.parametrize("redact", [False, "blur", "omit"])
def test_report_renders_cleanly_in_chromium(browser: DevToolsPipe, gate_run: CampaignRun, tmp_path: Path,
                                            redact: bool | str) -> None:
    """The runner's own rows and example crops (``gate_run``: a protected user named with markup), under a title
    that is a script tag."""
    examples = read_examples(gate_run.results / "examples")
    html = render_html(EVIL, gate_run.rows, examples, {"source": EVIL},
                       redact=redact, config={"name": EVIL, "cloaks": ["fawkes-v1.0:mid"]})  # type: ignore[arg-type]
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    problems, requested, facts, pixels = load_page(browser, page)
    assert problems == []
    assert facts["title"] == EVIL and facts["scripts"] == 0  # the title's "script" stayed text
    n_plots = sum(len(s.plots) for s in sections(gate_run.rows))
    # the identity named "<img ...>" stayed text too: no extra (broken) image
    assert facts["broken"] == 0 and facts["images"] == n_plots + (0 if redact == "omit" else 3 * len(examples))
    assert all(url.startswith(("file:", "data:")) for url in requested), requested  # self-contained: no network
    assert pixels.shape[0] >= 800 and pixels.shape[1] >= 1000
    non_white = np.any(pixels < 240, axis=2).mean()
    assert non_white > 0.02, f"screenshot looks blank ({non_white:.1%} non-white pixels)"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # text, plots and photos, not a flat colour


@pytest.mark.slow
def test_campaign_report_renders_cleanly_in_chromium(browser: DevToolsPipe, gate_run: CampaignRun) -> None:
    """The page the campaign itself wrote, as a person opens it."""
    problems, requested, facts, _ = load_page(browser, gate_run.results / "report.html")
    assert problems == [] and facts["scripts"] == 0 and facts["broken"] == 0
    assert all(url.startswith(("file:", "data:")) for url in requested), requested
