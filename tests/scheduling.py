"""Which pytest-xdist worker runs what (``--dist loadgroup`` in pyproject's addopts).

Every test goes to whichever worker is free, except that the tests of a module defining
a module-, class- or package-scoped fixture (an `authsvc serve`, a browser site) all go
to one worker, in order, so that fixture starts once. pytest-xdist's own loadgroup
cannot do this on pytest 9.2: it marks a group by renaming the node ids, which no longer
takes effect there (pytest-xdist#1386), so the groups would silently be ignored.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from xdist.scheduler import LoadScopeScheduling

# A fixture that outlives one test: `@pytest.fixture(scope="module")`, "class", "package".
_SHARED_FIXTURE = re.compile(r"""scope\s*=\s*["'](module|class|package)["']""")


def defines_a_shared_fixture(module: Path) -> bool:
    """True when the test module's source defines a module/class/package-scoped fixture."""
    try:
        return bool(_SHARED_FIXTURE.search(module.read_text()))
    except OSError:
        return False


class ModuleGroupScheduling(LoadScopeScheduling):
    """xdist's load scheduling, one test at a time to whichever worker is free, except
    that a module defining a shared fixture is one unit of work (one worker, in order).

    Only node ids reach the controller, so the module's source says whether it defines
    such a fixture. A test marked ``xdist_group`` joins its group should pytest-xdist's
    own marking work again (the ``@group`` suffix of its node id).
    """

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        self._root = Path(config.rootpath)
        self._grouped: dict[str, bool] = {}

    def _split_scope(self, nodeid: str) -> str:
        return unit_of_work(nodeid, self._root, self._grouped)


def unit_of_work(nodeid: str, root: Path, grouped: dict[str, bool]) -> str:
    """The scope ``nodeid`` is scheduled with: its ``@group``, its module when the module
    defines a shared fixture (``grouped`` caches that per module), else itself alone."""
    if nodeid.rfind("@") > nodeid.rfind("]"):
        return nodeid.rsplit("@", 1)[-1]
    module = nodeid.split("::", 1)[0]
    if module not in grouped:
        grouped[module] = defines_a_shared_fixture(root / module)
    return module if grouped[module] else nodeid
