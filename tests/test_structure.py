"""The floor plan: ``common`` is the base, ``world`` sits on it, ``dexter`` and ``dro`` are siblings that
never import each other, and no library imports the stages. Checked on the source (AST), so an import
inside a function counts as much as one at the top."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT = ("common", "world", "dexter", "dro", "stages")
# package -> the project packages it may import (besides itself)
ALLOWED = {
    "common": set(),
    "world": {"common"},
    "dexter": {"common", "world"},
    "dro": {"common", "world"},
}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {(a.name.split(".")[0], node.lineno) for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add((node.module.split(".")[0], node.lineno))
    return out


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_the_floor_plan_allows(package):
    bad = []
    for path in sorted((REPO / package).rglob("*.py")):
        for top, line in imported_packages(path):
            if top in PROJECT and top != package and top not in ALLOWED[package]:
                bad.append(f"{path.relative_to(REPO)}:{line} imports {top}")
    assert not bad, "\n".join(bad)


def test_the_scan_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from dro.train import train\n    import dexter.cli\n")
    assert {t for t, _ in imported_packages(f)} == {"dro", "dexter"}
