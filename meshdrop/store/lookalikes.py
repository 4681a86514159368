"""The look-alike (confusables) table that ``meshdrop.core.names`` folds names with, read
once from the confusable-homoglyphs package's copy of Unicode's confusables data."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from meshdrop.core.names import prototypes_from_graph
from meshdrop.errors import StoreError

_PACKAGE = "confusable_homoglyphs"
_DATA_FILE = "confusables.json"


@cache
def prototypes() -> dict[str, str]:
    """Each look-alike character's prototype. Read straight from the package's data file
    (not through its module, which also reads a CONFUSABLE_DATA override from the
    environment): the same table on every node."""
    try:
        text = resources.files(_PACKAGE).joinpath(_DATA_FILE).read_text("utf-8")
        data = json.loads(text)
        graph = {str(k): [str(item["c"]) for item in v] for k, v in data.items()}
    except (OSError, ModuleNotFoundError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreError(
            f"the look-alike character table ({_PACKAGE}/{_DATA_FILE}) is missing or damaged; "
            "reinstall meshdrop"
        ) from exc
    return prototypes_from_graph(graph)
