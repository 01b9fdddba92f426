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


# Commands whose stdout is their result, a contract users and tests read: the DEXTER CLI's keywords, the world
# CLI's gate results, the acceptance table. Everything else says what it does through ``logging``.
PRINTS_ITS_RESULT = {"dexter/cli.py", "world/__main__.py", "stages/acceptance.py"}


def test_one_logging_style_only_the_commands_print_their_results():
    """Stages and libraries log (stages.common.configure_logging sends it to stderr); a ``print`` or a
    ``log=print`` default elsewhere is a second style."""
    bad = []
    for package in PROJECT:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel in PRINTS_ITS_RESULT:
                continue
            bad += [f"{rel}:{node.lineno}" for node in ast.walk(ast.parse(path.read_text(), rel))
                    if isinstance(node, ast.Name) and node.id == "print"]
    assert not bad, "print instead of logging:\n" + "\n".join(bad)


def test_stage_logging_is_one_plain_line_on_stderr_configured_once(capsys):
    import logging

    from stages.common import configure_logging

    configure_logging()
    configure_logging()  # idempotent: still one handler, one line
    for name in ("stages.explain", "dro.pipeline", "dexter.reasoning.core"):
        logging.getLogger(name).info("%s says hello", name)
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == [f"{n} says hello" for n in
                                              ("stages.explain", "dro.pipeline", "dexter.reasoning.core")]
