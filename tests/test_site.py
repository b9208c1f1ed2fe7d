"""The documentation site builds with no warning, and its code samples run.

``mkdocs build --strict`` runs here, so a broken link or anchor, or a page left out of
the navigation, fails the suite. The code blocks that follow an HTML comment
``<!-- tested: NAME -->`` in docs/ are run as they are written against a real
`authsvc serve` (only the host and port are swapped for the test server's), and what
they print is checked against the comments written under them: the docs and the
tests cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import requests

from authsvc.config import Settings
from scripts.griffe_rst_roles import markdown
from tests.test_docs import _readme_test_command
from tests.test_e2e import ServeProcess, serving_on_test_redis

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DEMO = ("demo", "e10dcc75")
ORDERS_SECRET = "orders-secret-for-the-docs-0123456789"  # AUTHSVC_TOKEN_CLIENTS: 24+ characters
BUILD_TIMEOUT = 120
RUN_TIMEOUT = 120

# A fenced block right after its marker comment (blank lines between are allowed).
TESTED_BLOCK = re.compile(r"<!-- tested: ([\w-]+) -->\s*\n```(\w+)\n(.*?)\n```", re.DOTALL)
# An answer documented under a command: `# {"code": 200, ...` and its `#   ...` lines.
ANSWER_START = re.compile(r'^# (\{"code": (\d+).*)$')
ANSWER_MORE = re.compile(r"^#\s{2,}(.*)$")
# `print(...)  # what it prints`
PRINT_COMMENT = re.compile(r"^\s*print\(.*\)\s+# (.+)$")


def blocks_marked(name: str, language: str) -> list[str]:
    """The bodies of the ``<!-- tested: name -->`` blocks, in page order; one page only."""
    found = [
        (page, lang, body)
        for page in sorted(DOCS.rglob("*.md"))
        for marker, lang, body in TESTED_BLOCK.findall(page.read_text())
        if marker == name
    ]
    assert found, f"no <!-- tested: {name} --> block in docs/"
    assert {page for page, _, _ in found} == {found[0][0]}, f"{name} blocks span several pages"
    assert {lang for _, lang, _ in found} == {language}, f"{name} blocks are not all {language}"
    return [body for _, _, body in found]


def documented_answers(blocks: list[str]) -> list[tuple[int, str | None, set[str]]]:
    """Each documented answer: its code, its error slug, and the JSON keys it names."""
    answers: list[tuple[int, str | None, list[str]]] = []
    for line in "\n".join(blocks).splitlines():
        if start := ANSWER_START.match(line):
            answers.append((int(start[2]), None, [start[1]]))
        elif (more := ANSWER_MORE.match(line)) and answers:
            answers[-1][2].append(more[1])
    result = []
    for code, _, parts in answers:
        text = " ".join(parts)
        error = re.search(r'"error": "(\w+)"', text)
        result.append((code, error[1] if error else None, set(re.findall(r'"(\w+)":', text))))
    return result


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """`mkdocs build --strict` of ``config`` into ``site``, output captured."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # the theme's banner is no warning of ours
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )


def on_server(blocks: list[str], server: ServeProcess) -> str:
    """The shell blocks as one script, aimed at ``server`` instead of localhost:8000."""
    assert all("localhost:8000" in block for block in blocks if "curl" in block)
    return "\n".join(blocks).replace("localhost:8000", server.url.removeprefix("http://"))


def keys_of(envelope: dict[str, Any]) -> set[str]:
    """The envelope's keys and, when data is an object, its keys too."""
    data = envelope.get("data")
    return set(envelope) | (set(data) if isinstance(data, dict) else set())


def check_answers(
    answers: list[dict[str, Any]], blocks: list[str]
) -> list[tuple[int, str | None, set[str]]]:
    """Each printed answer has the code, slug and keys documented under its command."""
    documented = documented_answers(blocks)
    assert len(answers) == len(documented), answers
    for answer, (code, error, keys) in zip(answers, documented, strict=True):
        assert answer["code"] == code, answer
        assert (answer["data"] or {}).get("error") == error, answer
        assert keys <= keys_of(answer), (keys - keys_of(answer), answer)
    return documented


def run_shell(script: str, cwd: Path, **env: str) -> list[dict[str, Any]]:
    """Run ``script`` with bash (-euo pipefail); the JSON answers it printed, in order."""
    assert shutil.which("curl"), "the docs' commands need curl: apt-get install curl"
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], "HOME": str(cwd), **env},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


# -- the build -----------------------------------------------------------------------------


def test_site_builds_strict_with_no_warning(tmp_path: Path) -> None:
    """`mkdocs build --strict` succeeds and logs no warning; the SDK reference is rendered."""
    result = mkdocs_build(ROOT / "mkdocs.yml", tmp_path / "site")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    reference = (tmp_path / "site/python-sdk/index.html").read_text()
    # mkdocstrings rendered the module's public API from its docstrings.
    for anchor in ("authsvc.client.AuthClient", "authsvc.client.FileTokenStore"):
        assert f'id="{anchor}"' in reference
    # reST markup in the docstrings is shown as Markdown code (scripts/griffe_rst_roles.py).
    assert ":class:`" not in reference
    assert "``" not in reference
    assert "<code>AuthClientError</code>" in reference


def test_rst_roles_and_literals_become_code_spans() -> None:
    """The docs' griffe extension turns reST inline markup into Markdown, nothing more."""
    text = "Raises :class:`~authsvc.client.RefreshRefused`; ``json`` is :meth:`to_json`::"
    assert markdown(text) == "Raises `authsvc.client.RefreshRefused`; `json` is `to_json`:"
    assert markdown("a: b :: c") == "a: b :: c"


def test_strict_build_fails_on_a_broken_link_a_bad_anchor_and_a_page_not_in_nav(
    tmp_path: Path,
) -> None:
    """The check has teeth: each kind of rot is a warning, and a warning fails the build."""
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    config = (
        (ROOT / "mkdocs.yml")
        .read_text()
        .replace("paths: [.]", f"paths: [{ROOT}]")
        .replace("- scripts/", f"- {ROOT}/scripts/")
    )
    (tmp_path / "mkdocs.yml").write_text(config)
    with (docs / "index.md").open("a") as index:
        index.write("\n[gone](no-such-page.md) and [nowhere](api.md#no-such-anchor)\n")
    (docs / "orphan.md").write_text("# Orphan\n\nIn docs/ but in no navigation entry.\n")

    result = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")

    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    warnings = [line for line in output.splitlines() if line.startswith("WARNING")]
    assert any("no-such-page.md" in line for line in warnings), output
    assert any("no-such-anchor" in line for line in warnings), output
    assert any('not included in the "nav"' in line for line in warnings), output
    assert "  - orphan.md" in output, output


def test_every_markdown_file_under_docs_is_a_nav_entry() -> None:
    """Each page in docs/ is named in mkdocs.yml's nav (and each nav entry exists)."""
    config = (ROOT / "mkdocs.yml").read_text()
    nav = set(re.findall(r"^\s*-\s[^:\n]+:\s(\S+\.md)\s*$", config, re.MULTILINE))
    pages = {page.relative_to(DOCS).as_posix() for page in DOCS.rglob("*.md")}
    assert pages == nav


def test_no_list_is_glued_to_the_paragraph_above() -> None:
    """A list needs a blank line before it: Python-Markdown would print it as plain text.

    (GitHub renders the README's lists without one, so text moved from it can carry this.)
    """
    glued = []
    for page in sorted(DOCS.rglob("*.md")):
        fenced = False
        for number, (previous, line) in enumerate(pairwise(page.read_text().splitlines()), 2):
            fenced ^= previous.startswith("```")
            if (
                not fenced
                and re.match(r"(- |\d+\. )", line)
                and previous.strip()
                and not re.match(r"(\s|- |\d+\. )", previous)
            ):
                glued.append(f"{page.relative_to(DOCS)}:{number}")
    assert glued == []


def test_every_setting_is_in_the_site_configuration_table() -> None:
    """The Configuration page has a row for each Settings field, and none for a setting
    that does not exist (the page, not the README, is the reference since issue 19)."""
    page = (DOCS / "operations/configuration.md").read_text()
    missing = [
        f.name
        for f in dataclasses.fields(Settings)
        if f"| `AUTHSVC_{f.name.upper()}` |" not in page
    ]
    assert missing == []
    rows = re.findall(r"^\| `AUTHSVC_(\w+)` \|", page, re.MULTILINE)
    assert sorted(rows) == sorted(f.name.upper() for f in dataclasses.fields(Settings))


def test_the_site_shows_the_readme_test_command() -> None:
    """The quick start page gives the README's test command verbatim (what CI runs)."""
    page = (DOCS / "quickstart.md").read_text()
    commands = re.findall(r"```sh\n(python3 -m venv[^\n]*pytest[^\n]*)\n```", page)
    assert commands == [_readme_test_command()]


# -- the code samples ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def docs_server(
    real_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    """`authsvc serve` on the test Redis, its own instance folder, the demo account added.

    One resource server may introspect: ``orders-api`` with :data:`ORDERS_SECRET`.
    """
    folder = tmp_path_factory.mktemp("site")
    with serving_on_test_redis(
        real_redis_url,
        folder,
        users=(DEMO,),
        INSTANCE_PATH=folder / "instance",
        TOKEN_CLIENTS=f"orders-api:{ORDERS_SECRET}",
    ) as serve:
        yield serve


@pytest.mark.e2e
def test_quick_start_curl_flow_runs_as_documented(docs_server: ServeProcess, tmp_path: Path):
    """The quick start's shell blocks: login, /me, refresh, logout, then both tokens refused.

    Each answer printed has the code, the error slug and every key of the answer
    documented under its command.
    """
    blocks = blocks_marked("quickstart", "sh")

    answers = run_shell(on_server(blocks, docs_server), tmp_path)

    documented = check_answers(answers, blocks)
    assert [(code, error) for code, error, _ in documented] == [
        (200, None),  # login
        (200, None),  # /me
        (200, None),  # refresh
        (200, None),  # logout
        (401, "token_revoked"),  # /me with the logged-out access token
        (401, "session_revoked"),  # refresh with the ended session's refresh token
    ]
    assert answers[1]["data"]["username"] == DEMO[0]


@pytest.mark.e2e
def test_python_sdk_snippets_run_as_documented(docs_server: ServeProcess, tmp_path: Path):
    """The Python SDK page's blocks, in one process: each print shows what its comment says."""
    blocks = blocks_marked("python-sdk", "python")
    assert all("http://127.0.0.1:8000" in block for block in blocks if "AuthClient(" in block)
    script = "\n\n".join(blocks).replace("http://127.0.0.1:8000", docs_server.url)
    expected = [m[1] for line in script.splitlines() if (m := PRINT_COMMENT.match(line))]

    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,  # the snippets' token file lands here
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected
    assert len(expected) >= 6, "the snippets lost their printed checks"
    assert not (tmp_path / "tokens.json").exists()  # logout emptied the file store


@pytest.mark.e2e
def test_introspection_sample_runs_as_documented(docs_server: ServeProcess, tmp_path: Path):
    """The resource servers' introspection commands: a live token is active, junk is not."""
    blocks = blocks_marked("introspection", "sh")
    login = requests.post(
        f"{docs_server.url}/api/v1/user/login",
        json={"username": DEMO[0], "password": DEMO[1]},
        timeout=10,
    )
    access = login.json()["data"]["access_token"]

    answers = run_shell(
        on_server(blocks, docs_server), tmp_path, ACCESS=access, ORDERS_SECRET=ORDERS_SECRET
    )

    check_answers(answers, blocks)
    assert [answer["data"]["active"] for answer in answers] == [True, False]
    assert answers[0]["data"]["username"] == DEMO[0]
