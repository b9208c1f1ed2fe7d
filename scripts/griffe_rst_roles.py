"""A griffe extension for the docs site: the SDK's reST inline markup, as Markdown.

authsvc's docstrings use reST roles and literals (``:class:`TokenStore```, ````json````, a
paragraph ending in ``::`` before a code block), which mkdocstrings would show raw.
Each becomes a Markdown code span; nothing else in the docstring changes.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension

_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``")
_LITERAL_BLOCK = re.compile(r"::$", re.MULTILINE)


def markdown(text: str) -> str:
    """reST roles and double-backquote literals as Markdown code spans; ``::`` as ``:``."""
    text = _ROLE.sub(r"`\1`", text)
    text = _LITERAL.sub(r"`\1`", text)
    return _LITERAL_BLOCK.sub(":", text)


class RstRoles(Extension):
    """Rewrite every loaded object's docstring with :func:`markdown`."""

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        """Called by griffe once per object (module, class, function, attribute)."""
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
