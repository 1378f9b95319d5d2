"""Headless Chromium for the tests that look at a page as a reader's browser lays it out."""

from __future__ import annotations

import html as html_text
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["chromium", "page_layout"]

#: Run in the page after layout: the page's width against the window's, and per table its box and its
#: scrolling container's (the nearest ancestor that scrolls sideways), written into the page as JSON.
_PROBE = """<script>
addEventListener("load", () => {
  const doc = document.documentElement;
  const tables = [...document.querySelectorAll("table")].map((t) => {
    t.closest("details")?.setAttribute("open", "");
    let box = t.parentElement;
    while (box && !["auto", "scroll"].includes(getComputedStyle(box).overflowX)) box = box.parentElement;
    const r = t.getBoundingClientRect();
    const numeric = [...t.querySelectorAll("td.num")].map((c) => getComputedStyle(c).textAlign);
    return {
      cls: t.className, width: r.width, right: r.right,
      scroller: box ? {right: box.getBoundingClientRect().right, client: box.clientWidth,
                       scroll: box.scrollWidth} : null,
      numeric,
    };
  });
  const out = document.createElement("pre");
  out.id = "orch-layout";
  out.textContent = JSON.stringify({window: innerWidth, page: doc.scrollWidth, tables});
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str | None:
    """The headless browser's command, when one is installed (Debian's ``chromium`` package)."""
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def page_layout(browser: str, html: Path, work: Path, *, width: int = 900) -> dict[str, Any]:
    """How Chromium lays out the page ``html`` in a window ``width`` pixels wide: ``window``, ``page``
    (the document's scroll width) and per table (every ``<details>`` opened) its ``width``, ``right``
    edge, its scrolling container (``right``, ``client`` and ``scroll`` widths; None when no ancestor
    scrolls sideways) and the computed ``text-align`` of its ``td.num`` cells."""
    probe = work / f"probe-{html.name}"
    probe.write_text(html.read_text().replace("</body>", _PROBE + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    flags += [f"--user-data-dir={work / 'chrome-layout'}", f"--window-size={width},900", "--hide-scrollbars"]
    flags += ["--virtual-time-budget=5000", "--dump-dom"]
    res = subprocess.run([browser, *flags, probe.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="orch-layout">(.*?)</pre>', res.stdout, re.S)
    assert found, f"no layout from Chromium: {res.stderr[-2000:]}"
    return json.loads(html_text.unescape(found.group(1)))
