"""Find a Chromium for the browser tests, or get one, so the README's test command works
on a fresh machine with nothing but Python.

Order: ``AUTHSVC_TEST_CHROMIUM`` (a path; when set, the only place looked at), Debian's
``/usr/bin/chromium``, a ``chromium`` on PATH, Playwright's own download. When none is
there: as root with apt, Debian's ``chromium`` package is installed; otherwise
``playwright install chromium`` is tried. When that fails too, the tests fail with one
line saying what to install: a browser test never skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import sync_playwright

DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Bounds for the one-off installs: an apt mirror or a download that hangs must not hold
# the test run for ever.
APT_TIMEOUT_S = 900
PLAYWRIGHT_TIMEOUT_S = 600
INSTALL_HINT = (
    "no Chromium for the browser tests: run `apt-get install chromium` as root, or "
    "`.venv/bin/python -m playwright install chromium`, or set AUTHSVC_TEST_CHROMIUM "
    "to a Chromium executable"
)


class ChromiumUnavailable(RuntimeError):
    """Neither found nor installable; the message says what to install."""


def _playwright_chromium() -> Path:
    # Where `playwright install chromium` puts its browser (it may not be there).
    with sync_playwright() as playwright:
        return Path(playwright.chromium.executable_path)


def _executable(path: Path | None) -> Path | None:
    return path if path is not None and path.is_file() and os.access(path, os.X_OK) else None


def find_chromium() -> Path | None:
    """An installed Chromium, or None."""
    override = os.environ.get("AUTHSVC_TEST_CHROMIUM")
    if override:
        return _executable(Path(override))
    on_path = shutil.which("chromium")
    for candidate in (DEBIAN_CHROMIUM, Path(on_path) if on_path else None):
        if found := _executable(candidate):
            return found
    return _executable(_playwright_chromium())


def _install_with_apt(say: Callable[[str], None]) -> Path | None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    say("browser tests: installing Debian's chromium with apt-get (once, about 1-3 minutes)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "chromium"],
    ):
        try:
            subprocess.run(command, env=env, check=True, capture_output=True, timeout=APT_TIMEOUT_S)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            say(f"browser tests: `{' '.join(command)}` failed: {error}")
            return None
    return _executable(DEBIAN_CHROMIUM)


def _install_with_playwright(say: Callable[[str], None]) -> Path | None:
    say("browser tests: downloading Playwright's chromium (`playwright install chromium`)")
    command = [sys.executable, "-m", "playwright", "install", "chromium"]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=PLAYWRIGHT_TIMEOUT_S)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        say(f"browser tests: `playwright install chromium` failed: {error}")
        return None
    return _executable(_playwright_chromium())


def chromium_executable(say: Callable[[str], None]) -> Path:
    """A Chromium to drive: found, else installed (apt as root, else Playwright's download).

    ``say`` reports what is being installed, so a long first run explains itself.
    Raises :class:`ChromiumUnavailable` when nothing worked.
    """
    found = find_chromium()
    if found is not None:
        return found
    installed = _install_with_apt(say) or _install_with_playwright(say)
    if installed is None:
        raise ChromiumUnavailable(INSTALL_HINT)
    return installed
