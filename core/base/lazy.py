"""A stage package's public names, imported from their modules on first use (PEP 562).

A page that draws a form imports `core.train` for `TrainConfig` without importing torch: each name is
looked up in its module only when read. It is read from the module every time (not copied into the
package), so a test that patches `core.maps.jobs.launch_map` patches what `from core.maps import
launch_map` gives a page on its next run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, namespace: dict[str, Any], exports: dict[str, str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, whose public `name` lives in module `exports[name]`."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
