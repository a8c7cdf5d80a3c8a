"""The house's layout rules, read from the source: data flows one way through the stage packages."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Lower floors first; packages on one floor never import each other.
FLOORS = (("base",), ("jobs",), ("demo", "data"), ("tiles",), ("train",), ("embed",), ("maps", "ranking"),
          ("predict",), ("tour",), ("cli",))
FLOOR = {package: level for level, packages in enumerate(FLOORS) for package in packages}
PAGES_FLOOR = len(FLOORS)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import of a core or pages module, at any depth of the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            if node.module == "core":  # `from core import jobs` names a package
                found += [(node.lineno, f"core.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] in ("core", "pages", "streamlit")]


def _floor_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] == "pages":
        return PAGES_FLOOR
    return FLOOR.get(parts[1]) if len(parts) > 1 else None


def _core_files() -> list[Path]:
    return sorted(p for p in (ROOT / "core").rglob("*.py") if "__pycache__" not in p.parts)


def _package_of(path: Path) -> str | None:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return parts[1] if len(parts) > 2 else None


def layer_violations(files: list[Path]) -> list[str]:
    """Each import that runs upward or sideways between stage packages, as 'file:line imports module'."""
    bad = []
    for path in files:
        package = _package_of(path)
        if package is None:
            continue
        here = FLOOR[package]
        for line, module in _imports(path):
            if module.startswith("streamlit"):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module} (core never imports streamlit)")
                continue
            target = _floor_of(module)
            if target is None or module.split(".")[1:2] == [package]:
                continue
            if target > here or (target == here and package != module.split(".")[1]):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return bad


def test_core_imports_run_down_the_stages_only() -> None:
    assert layer_violations(_core_files()) == []


def test_the_layer_check_catches_an_upward_import(tmp_path: Path) -> None:
    fake = ROOT / "core" / "tiles" / "_layer_probe.py"
    fake.write_text("from core.train import runs\nimport streamlit\n")
    try:
        bad = layer_violations([fake])
    finally:
        fake.unlink()
    assert len(bad) == 2, bad


def test_every_core_module_lives_in_a_stage_package() -> None:
    loose = sorted(p.name for p in (ROOT / "core").glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert loose == []
    assert set(FLOOR) == {p.name for p in (ROOT / "core").iterdir() if (p / "__init__.py").is_file()}


def test_only_the_command_line_imports_core_cli() -> None:
    users = [f"{p.relative_to(ROOT)}:{line}" for p in [*_core_files(), *(ROOT / "pages").glob("*.py")]
             if _package_of(p) != "cli" and p.name != "__main__.py"
             for line, module in _imports(p) if module.startswith("core.cli")]
    assert users == []


def test_pages_import_stage_package_roots_only() -> None:
    deep = [f"{p.relative_to(ROOT)}:{line} imports {module}" for p in sorted((ROOT / "pages").glob("*.py"))
            for line, module in _imports(p) if module.startswith("core.") and module.count(".") > 1]
    assert deep == []


@pytest.mark.parametrize("package", ["core.base", "core.jobs", "core.data", "core.tiles", "core.train", "core.embed",
                                     "core.maps", "core.ranking", "core.tour"])
def test_importing_a_stage_root_and_its_forms_does_not_import_torch(package: str) -> None:
    # A page that draws a form must not pay for torch (seconds per server start, and memory).
    code = (f"import sys, {package} as p; [getattr(p, n) for n in getattr(p, '__all__', []) "
            "if n not in ('imagenet_weights_status',)]; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
