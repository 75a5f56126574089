"""The HTML report in a real browser: headless Chromium, driven through its command line.

A copy of the report gets a small probe script (the report itself has no JavaScript) that records
console errors and uncaught exceptions, checks that every image decoded, and measures where the
verdict sits; ``--dump-dom`` returns the page with the probe's findings. ``--screenshot`` takes
the first 1400 x 900 screen, which must show the verdict cards in their colours. Skipped, with the
reason, when no Chromium is installed (``apt-get install chromium`` on Debian; or point
``TABSYNTH_CHROMIUM`` at a binary).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

WIDTH, HEIGHT = 1400, 900
_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def _chromium() -> str | None:
    override = os.environ.get("TABSYNTH_CHROMIUM")
    if override:
        return override
    return next((path for path in map(shutil.which, _NAMES) if path), None)


CHROMIUM = _chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium found (apt-get install chromium, or set TABSYNTH_CHROMIUM)",
)

_PROBE = """<script>
window.__errors = [];
const _error = console.error;
console.error = (...a) => { window.__errors.push(a.map(String).join(' ')); _error(...a); };
window.addEventListener('error', e => window.__errors.push(
  e.target && e.target !== window ? 'failed to load: ' + (e.target.alt || e.target.tagName)
                                  : 'uncaught: ' + e.message), true);
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const v = document.getElementById('verdict');
  const r = v ? v.getBoundingClientRect() : null;
  const cards = Array.from(document.querySelectorAll('#verdict .card')).map(c => {
    const b = c.getBoundingClientRect();
    return {level: c.dataset.level, top: b.top, bottom: b.bottom, left: b.left, right: b.right,
            visible: getComputedStyle(c).visibility === 'visible' && b.width > 0};
  });
  const out = {
    errors: window.__errors,
    images: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    verdict: r && {top: r.top, bottom: r.bottom, width: r.width},
    cards: cards,
    viewport: [window.innerWidth, window.innerHeight],
  };
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--no-first-run", "--disable-extensions", "--allow-file-access-from-files",
        f"--window-size={WIDTH},{HEIGHT}", "--virtual-time-budget=10000",
        "--enable-logging=stderr", "--v=0", *args,
    ]  # fmt: skip
    home = cwd / "home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ, HOME=str(home))
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report of a small fitted TVAE on the demo patients table (verdict + every plot kind)."""
    import tabsynth
    from tabsynth.datasets import make_patients, split_table

    folder = tmp_path_factory.mktemp("browser")
    table = make_patients(600, random_state=0)
    train, holdout, _ = split_table(table, "readmitted_30d", "binary", seed=0)
    model = tabsynth.TVAE(epochs=3, batch_size=100, random_state=0, verbose=False).fit(train)
    synthetic = model.sample(len(train), random_state=0)
    report = tabsynth.evaluate(
        train, synthetic, holdout=holdout, target="readmitted_30d", random_state=0, model=model
    )
    return report.to_html(folder / "report.html")


@needs_chromium
def test_report_loads_cleanly_and_opens_with_the_verdict(report_page: Path) -> None:
    page = report_page.read_text(encoding="utf-8")
    assert "<script" not in page  # the report is static; the probe goes into a copy only
    probe_page = report_page.with_name("probe.html")
    probe_page.write_text(page.replace("<head>", "<head>" + _PROBE, 1), encoding="utf-8")
    done = _run("--dump-dom", probe_page.as_uri(), cwd=report_page.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, "the probe did not run: " + done.stderr[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))

    assert result["errors"] == []
    # Chromium's own log of the page's console (a failed resource load lands here too)
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if "error" in line.lower()], console
    assert result["images"] == page.count("<img ") and result["images"] >= 20
    assert result["broken"] == []
    assert result["viewport"][0] == WIDTH
    verdict = result["verdict"]
    assert verdict is not None and 0 <= verdict["top"] and verdict["bottom"] <= HEIGHT
    assert len(result["cards"]) == 5
    for card in result["cards"]:
        assert card["visible"] and card["bottom"] <= HEIGHT and card["right"] <= WIDTH, card
        assert card["level"] in ("good", "check", "poor")


@needs_chromium
def test_first_screen_screenshot_shows_the_coloured_verdict(report_page: Path) -> None:
    from matplotlib.image import imread

    shot = report_page.with_name("first-screen.png")
    done = _run(f"--screenshot={shot}", report_page.as_uri(), cwd=report_page.parent)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    colours = {"good": (0x2E, 0x7D, 0x32), "check": (0xB0, 0x7D, 0x00), "poor": (0xC6, 0x28, 0x28)}
    page = report_page.read_text(encoding="utf-8")
    levels = set(re.findall(r"data-level='(\w+)'", page))
    rgb = np.rint(pixels * 255).astype(int)
    top = rgb[: HEIGHT // 2]  # the cards' level badges sit in the upper half of the first screen
    for level in levels:
        hit = np.all(np.abs(top - np.array(colours[level])) <= 3, axis=-1)
        assert hit.sum() > 200, f"no {level} badge colour in the first screen"
