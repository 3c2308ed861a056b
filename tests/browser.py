"""Open a page in real headless Chromium (Debian's ``chromium``) with the network off.

No WebDriver: Chromium's own ``--dump-dom`` (the DOM after scripts ran) and
``--screenshot``, with console messages on stderr (``--enable-logging=stderr``). Every
network path is closed: the proxy is a dead local port and every host name resolves to
nothing, so a page that tried to fetch anything would log a failure instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM_NAMES = ("/usr/bin/chromium", "chromium", "chromium-browser")


def chromium() -> str:
    """The Chromium binary; skip with the reason when absent, but fail under CI."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    reason = ("chromium is not installed (apt-get install chromium); the HTML report's "
              "browser test cannot run")
    if os.environ.get("CI"):
        pytest.fail(reason + " -- and CI is set, where it must run")
    pytest.skip(reason)


def _flags(profile: Path) -> list[str]:
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            "--disable-default-apps", "--disable-extensions",
            f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0",
            "--virtual-time-budget=15000", "--hide-scrollbars"]


def render(page: Path, workdir: Path, screenshot: Path | None = None,
           size: tuple[int, int] = (1200, 2400)) -> tuple[str, str]:
    """(DOM after scripts ran, Chromium's stderr log) for ``page``; also a PNG
    ``screenshot`` of it when asked."""
    exe = chromium()
    url = page.resolve().as_uri()
    dom = subprocess.run([exe, *_flags(workdir / "profile-dom"), "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    if screenshot is not None:
        subprocess.run([exe, *_flags(workdir / "profile-shot"),
                        f"--window-size={size[0]},{size[1]}", f"--screenshot={screenshot}",
                        url], capture_output=True, text=True, timeout=120, check=True)
    return dom.stdout, dom.stderr
