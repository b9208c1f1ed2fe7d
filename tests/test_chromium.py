"""The browser tests find a Chromium, or get one, or say in one line what to install."""

from __future__ import annotations

import subprocess

import pytest

from tests import chromium


def test_an_executable_named_by_the_override_is_used_without_installing(tmp_path, monkeypatch):
    """AUTHSVC_TEST_CHROMIUM names the executable; nothing is installed then."""
    executable = tmp_path / "my-chromium"
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    monkeypatch.setenv("AUTHSVC_TEST_CHROMIUM", str(executable))
    monkeypatch.setattr(subprocess, "run", _no_subprocess)
    assert chromium.chromium_executable(print) == executable


def test_an_empty_location_is_not_a_browser(tmp_path, monkeypatch):
    """A lookup pointed at an empty folder (or a file that cannot run) finds nothing."""
    monkeypatch.setenv("AUTHSVC_TEST_CHROMIUM", str(tmp_path / "chromium"))
    assert chromium.find_chromium() is None
    (tmp_path / "chromium").write_text("not executable")
    assert chromium.find_chromium() is None


def test_without_root_or_a_download_the_failure_says_what_to_install(tmp_path, monkeypatch):
    """Not root, and Playwright's download fails: one clear line, naming both remedies."""
    monkeypatch.setenv("AUTHSVC_TEST_CHROMIUM", str(tmp_path / "missing"))
    monkeypatch.setattr(chromium.os, "geteuid", lambda: 1000)
    commands: list[list[str]] = []

    def failing_download(command: list[str], **_: object) -> None:
        commands.append(command)
        raise subprocess.CalledProcessError(1, command)

    monkeypatch.setattr(subprocess, "run", failing_download)
    said: list[str] = []
    with pytest.raises(chromium.ChromiumUnavailable) as caught:
        chromium.chromium_executable(said.append)
    assert commands == [[chromium.sys.executable, "-m", "playwright", "install", "chromium"]]
    message = str(caught.value)
    assert "\n" not in message
    assert "apt-get install chromium" in message
    assert "playwright install chromium" in message
    assert any("playwright install chromium" in line for line in said)


def test_as_root_with_apt_debians_package_is_installed(tmp_path, monkeypatch):
    """As root with apt-get, the missing browser is Debian's chromium package."""
    monkeypatch.setenv("AUTHSVC_TEST_CHROMIUM", str(tmp_path / "missing"))
    monkeypatch.setattr(chromium.os, "geteuid", lambda: 0)
    monkeypatch.setattr(chromium.shutil, "which", lambda name: f"/usr/bin/{name}")
    installed = tmp_path / "chromium"
    monkeypatch.setattr(chromium, "DEBIAN_CHROMIUM", installed)
    commands: list[list[str]] = []

    def apt(command: list[str], **_: object) -> None:
        commands.append(command)
        if command[:2] == ["apt-get", "install"]:
            installed.write_text("#!/bin/sh\n")
            installed.chmod(0o755)

    monkeypatch.setattr(subprocess, "run", apt)
    assert chromium.chromium_executable(lambda _line: None) == installed
    assert commands == [
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "chromium"],
    ]


def _no_subprocess(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"nothing may be installed: {args}")


def test_the_browser_fixture_drives_a_real_chromium(browser):
    """The session's browser is a real Chromium that renders a page."""
    page = browser.new_page()
    try:
        page.set_content("<p id=x>rendered</p>")
        assert page.inner_text("#x") == "rendered"
    finally:
        page.close()
