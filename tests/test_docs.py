"""The README stays true: its test command is what CI runs, every setting is documented."""

import dataclasses
import re
from pathlib import Path

from authsvc.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def _readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```sh\n(python3 -m venv[^\n]*)\n```", readme)
    assert len(commands) == 2, "the quick start has exactly two commands"
    return next(c for c in commands if "pytest" in c)


def test_ci_runs_exactly_the_readme_test_command():
    """.ci/run ends with the README's test command, verbatim."""
    ci_lines = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line.strip()]
    assert ci_lines[-1] == _readme_test_command()


def test_every_setting_is_in_the_readme_config_table():
    """Each Settings field has a row `AUTHSVC_<NAME>` in the README."""
    readme = (ROOT / "README.md").read_text()
    missing = [
        f.name
        for f in dataclasses.fields(Settings)
        if f"| `AUTHSVC_{f.name.upper()}` |" not in readme
    ]
    assert missing == []
