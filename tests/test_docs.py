"""The README stays short and true: its test command is what CI runs, its run command is
the quick start's, and its links land on the site (tests/test_site.py checks the site)."""

import re
from pathlib import Path

from markdown.extensions.toc import slugify

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_BYTES = 15_000  # issue 19: the details live on the site
# A Markdown link's target: [text](target), the target without a scheme.
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _readme_test_command() -> str:
    readme = README.read_text()
    commands = re.findall(r"```sh\n(python3 -m venv[^\n]*)\n```", readme)
    assert len(commands) == 2, "the README has exactly two commands: run and test"
    return next(c for c in commands if "pytest" in c)


def _readme_run_command() -> str:
    readme = README.read_text()
    commands = re.findall(r"```sh\n(python3 -m venv[^\n]*)\n```", readme)
    return next(c for c in commands if "pytest" not in c)


def _anchors(page: Path) -> set[str]:
    """The ids of a page's headings, as mkdocs' toc extension makes them."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    return {slugify(title.strip(), "-") for title in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


def _relative_links(markdown_text: str) -> list[str]:
    """The relative link targets of a Markdown text (web addresses left out)."""
    return [t for t in LINK.findall(markdown_text) if not re.match(r"\w+:", t)]


def _broken_links(markdown_text: str) -> list[str]:
    """The relative links of a top-level Markdown text whose file or heading is missing."""
    broken = []
    for link in _relative_links(markdown_text):
        path, _, anchor = link.partition("#")
        target = (ROOT / path).resolve()
        if not target.is_file() or (anchor and anchor not in _anchors(target)):
            broken.append(link)
    return broken


def test_ci_runs_exactly_the_readme_test_command():
    """.ci/run ends with the README's test command, verbatim."""
    ci_lines = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line.strip()]
    assert ci_lines[-1] == _readme_test_command()


def test_the_readme_run_command_is_the_quick_starts():
    """The README's run command is the site's quick start command, verbatim."""
    page = (DOCS / "quickstart.md").read_text()
    assert f"```sh\n{_readme_run_command()}\n```" in page


def test_readme_is_short():
    """The README stays a summary: at most 15,000 bytes (issue 19)."""
    assert len(README.read_bytes()) <= README_MAX_BYTES


def test_every_readme_link_resolves_on_the_site():
    """Each relative link in the README names a file that exists, and its anchor a heading
    of that page, so the links work on GitHub and land where the site has the text."""
    readme = README.read_text()
    assert len(_relative_links(readme)) >= 20, "the README lost its links to the site"
    assert _broken_links(readme) == []


def test_the_link_check_has_teeth():
    """A missing page and a missing anchor are caught; a good link and a web address pass."""
    text = (
        "[gone](docs/no-such-page.md) [nowhere](docs/api.md#no-such-anchor) "
        "[slugs](docs/api.md#error-slugs) [web](https://example.com/x.md)"
    )
    assert _broken_links(text) == ["docs/no-such-page.md", "docs/api.md#no-such-anchor"]


def test_the_readme_links_every_page_of_the_site():
    """Each page in docs/ is one click from the README."""
    linked = {
        (ROOT / link.partition("#")[0]).resolve()
        for link in _relative_links(README.read_text())
        if link.startswith("docs/")
    }
    pages = {page.resolve() for page in DOCS.rglob("*.md")}
    assert pages - linked == set()
