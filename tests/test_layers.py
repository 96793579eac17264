"""Imports follow the data flow: no module imports one of a later stage (docs/design: layers, lowest first).

A module's stage is its top-level package under ``keysync`` (``keysync/faces/paste.py`` is in ``faces``);
``commands.py`` modules, ``cli`` (and any shell to come) are shells, above every stage. Imports inside
functions count too: a lazy import is still a dependency.
"""

import ast
from pathlib import Path

import keysync

LAYERS = [
    {"errors", "files", "constants", "parallel"},
    {"media", "audio", "diffusion", "models", "synth"},
    {"faces"},
    {"pipeline"},
    {"eval"},  # the metrics, which the benchmark and training score with
    {"bench", "train", "batch"},
    {"shell", "app"},  # the user interfaces: the CLI's commands and the web page
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
PACKAGE = Path(keysync.__file__).parent


def stage_of(parts: tuple[str, ...], package: Path = PACKAGE) -> str | None:
    """The stage of module ``keysync.<parts>``, or None for the package itself (and its attributes)."""
    if not parts or parts == ("__init__",):
        return None
    if not ((package / parts[0]).is_dir() or (package / f"{parts[0]}.py").is_file()):
        return None  # ``from . import __version__``
    if parts[-1] == "commands" or parts[0] == "cli":
        return "shell"
    return parts[0]


def imported_stages(path: Path, package: Path = PACKAGE):
    parts = path.relative_to(package).with_suffix("").parts
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = parts[: len(parts) - node.level]
            for alias in node.names:
                target = (*base, *(node.module.split(".") if node.module else ()), alias.name)
                # "from ..faces import paste" names a module; "from ..faces.paste import paste_back" a member
                yield stage_of(target[:-1] if node.module else target, package), node.lineno
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            for name in names:
                if name and name.split(".")[0] == "keysync":
                    yield stage_of(tuple(name.split(".")[1:]), package), node.lineno


def test_every_stage_is_in_a_layer():
    stages = {stage_of(p.relative_to(PACKAGE).with_suffix("").parts) for p in PACKAGE.rglob("*.py")}
    assert stages - {None} <= set(RANK), f"put {sorted(stages - {None} - set(RANK))} in LAYERS"


def test_no_module_imports_a_later_stage():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        me = stage_of(path.relative_to(PACKAGE).with_suffix("").parts)
        for stage, line in imported_stages(path):
            if me and stage and RANK[stage] > RANK[me]:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} ({me}) imports {stage}")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_a_wrong_import(tmp_path):
    """The walk is not blind: a lazy import of the pipeline inside a media module is found."""
    for folder in ("media", "pipeline"):
        (tmp_path / folder).mkdir()
    (tmp_path / "media" / "bad.py").write_text("def f():\n    from ..pipeline.dub import KeySyncPipeline\n")
    found = [stage for stage, _ in imported_stages(tmp_path / "media" / "bad.py", tmp_path)]
    assert found == ["pipeline"] and RANK["pipeline"] > RANK["media"]
