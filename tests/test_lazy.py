"""core.base.lazy: a stage root's names come from their modules on each read, so patches of a module reach pages."""

from __future__ import annotations

import pytest

import core.maps
from core.maps import jobs as map_jobs


def test_a_root_name_is_its_module_s_current_value(monkeypatch: pytest.MonkeyPatch) -> None:
    assert core.maps.launch_map is map_jobs.launch_map
    monkeypatch.setattr(map_jobs, "launch_map", "patched")
    assert core.maps.launch_map == "patched"


def test_an_unknown_name_is_an_attribute_error_and_dir_lists_the_exports() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = core.maps.nothing_here
    assert "launch_map" in dir(core.maps) and "MapParams" in core.maps.__all__
