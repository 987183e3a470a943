"""The exception tree drawn in ``slipstream.schemas.exceptions`` is the tree in the code, and library code raises
Slipstream's own errors, not bare built-ins (house style: one root, an ``exceptions.py`` per package)."""

from __future__ import annotations

import ast
import builtins
import importlib
import importlib.util
import os
import pkgutil
import re
from pathlib import Path

import slipstream
from slipstream.schemas import exceptions as root_module
from slipstream.schemas.exceptions import SlipstreamError

REPO = Path(__file__).resolve().parents[2]
# slipstream/<part> links to ../<part>
PARTS = ("streams", "features", "models", "serving", "infra", "schemas", "monitoring")

# Modules that are scripts, not library: importing one runs it. Each must define no class (checked below).
SCRIPTS = {"slipstream.__main__": "runs the CLI when imported (it is `python -m slipstream`)"}

BANNED = {"ValueError", "TypeError", "RuntimeError", "KeyError", "Exception", "BaseException", "AssertionError"}

# (file, built-in) -> why a bare built-in is right there. Every entry must still match a raise (no stale entries).
ALLOWED = {
    ("slipstream/settings.py", "ValueError"): (
        "pydantic field validators must raise ValueError; load_settings turns the ValidationError into ConfigError"
    ),
    ("slipstream/kafka_settings.py", "ValueError"): (
        "the Kafka security settings' pydantic validators (a part of Settings): load_settings makes it a ConfigError"
    ),
    ("serving/http_edge.py", "ValueError"): (
        "pydantic AfterValidators of the HTTP request models must raise ValueError; pydantic reports it as a 422"
    ),
    ("slipstream/cli/inputs.py", "KeyError"): (
        "spec(kind) looks up an input kind by a constant key of the code: a miss is a bug, not bad input"
    ),
}


def _import_everything() -> list[str]:
    """Import every module of the package; the names walked. Fails on any module that cannot be imported."""
    failed: list[str] = []
    walked = list(pkgutil.walk_packages(slipstream.__path__, "slipstream.", onerror=failed.append))
    names = [m.name for m in walked]
    for name in names:
        if name in SCRIPTS:
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - collected, reported below
            failed.append(f"{name}: {exc!r}")
    assert not failed, f"modules that cannot be imported: {failed}"
    return names


def _subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def _library_classes() -> set[type]:
    """Every SlipstreamError subclass the library defines (not one a test defines for itself)."""
    _import_everything()
    return {c for c in _subclasses(SlipstreamError) if c.__module__.startswith("slipstream.")}


def _drawn_tree() -> list[tuple[str, str, str | None]]:
    """(name, module, parent name) of each line of the tree drawn in the root docstring."""
    doc = root_module.__doc__ or ""
    block = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    line_re = re.compile(r"^    (?P<tree>(?:[│ ]   )*(?:[├└]── )?)(?P<name>\w+) +\((?P<module>[\w.]+)\)")
    rows: list[tuple[str, str, str | None]] = []
    stack: list[str] = []
    for line in block.splitlines():
        match = line_re.match(line)
        assert match, f"not a line of the tree: {line!r}"
        depth = len(match["tree"]) // 4
        assert depth <= len(stack), f"{match['name']} is drawn deeper than under a parent"
        del stack[depth:]
        rows.append((match["name"], match["module"], stack[-1] if stack else None))
        stack.append(match["name"])
    return rows


def _drawn_builtin_bases() -> dict[str, set[str]]:
    """The root docstring's list of classes that also derive from a built-in: class name -> built-in names."""
    doc = root_module.__doc__ or ""
    paragraph = doc.split("Some classes also derive from a built-in", 1)[1].split("\n\n", 1)[0]
    listing = paragraph.split("still catches it:", 1)[1]
    drawn: dict[str, set[str]] = {}
    for builtin, names in re.findall(r"``(\w+)``:([\w,\s]+)", listing):
        for name in re.findall(r"\w+", names):
            drawn.setdefault(name, set()).add(builtin)
    return drawn


def test_every_module_is_walked_and_imports() -> None:
    names = set(_import_everything())
    package_root = Path(slipstream.__file__).parent
    on_disk = set()
    for folder, dirs, files in os.walk(package_root, followlinks=True):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for file in files:
            if file.endswith(".py"):
                relative = Path(folder, file).relative_to(package_root.parent).with_suffix("")
                on_disk.add(".".join(relative.parts).removesuffix(".__init__"))
    assert on_disk - {"slipstream"} == names, "a module on disk is not reached by the walk (a folder without __init__?)"
    for script in SCRIPTS:
        assert script in names, f"{script} is listed as a script but does not exist"
        spec = importlib.util.find_spec(script)
        assert spec is not None and spec.origin is not None, script
        source = Path(spec.origin).read_text()
        assert not any(isinstance(n, ast.ClassDef) for n in ast.walk(ast.parse(source))), script


def test_the_root_docstring_draws_every_class_of_the_tree_and_nothing_else() -> None:
    drawn = _drawn_tree()
    assert drawn[0] == ("SlipstreamError", "slipstream.schemas.exceptions", None)
    names = [name for name, _, _ in drawn]
    assert len(names) == len(set(names)), "a class is drawn twice"
    classes = {name: getattr(importlib.import_module(module), name, None) for name, module, _ in drawn}
    missing = sorted(name for name, cls in classes.items() if cls is None)
    assert not missing, f"drawn in the tree but not defined in the module named beside them: {missing}"
    for name, _, parent in drawn[1:]:
        cls = classes[name]
        assert isinstance(cls, type) and issubclass(cls, SlipstreamError), name
        bases = [b.__name__ for b in cls.__bases__ if issubclass(b, SlipstreamError)]
        assert bases == [parent], f"{name} is drawn under {parent} but derives from {bases}"
    undrawn = sorted(f"{c.__module__}.{c.__name__}" for c in _library_classes() - set(classes.values()))
    assert not undrawn, f"not drawn in the docstring of slipstream.schemas.exceptions: {undrawn}"


def test_the_built_in_bases_are_listed_in_the_root_docstring() -> None:
    actual = {
        cls.__name__: {b.__name__ for b in cls.__bases__ if b.__module__ == "builtins" and b is not Exception}
        for cls in _library_classes()
    }
    expected = {name: bases for name, bases in actual.items() if bases}
    drawn = _drawn_builtin_bases()
    assert drawn == expected, f"the root docstring lists built-in bases {drawn}; the classes have {expected}"


def test_errors_live_in_exceptions_modules_whose_docstring_draws_their_branch() -> None:
    for cls in _library_classes():
        module = importlib.import_module(cls.__module__)
        assert cls.__module__.endswith(".exceptions"), f"{cls.__name__} belongs in an exceptions.py"
        assert re.search(rf"\b{cls.__name__}\b", module.__doc__ or ""), f"{cls.__module__}'s docstring lacks it"


def _library_files() -> list[Path]:
    files: list[Path] = []
    for top in ("slipstream", *PARTS):
        for folder, dirs, names in os.walk(REPO / top):  # not into slipstream/<part>: those links are the parts
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            files += [Path(folder, n) for n in names if n.endswith(".py")]
    return sorted(files)


def _bare_raises(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Name) and target.id in BANNED:
                found.append((target.id, node.lineno))
    return found


def test_library_code_raises_no_bare_builtin_error() -> None:
    assert all(hasattr(builtins, name) for name in BANNED)
    files = _library_files()
    assert len(files) > 100 and REPO / "streams" / "publish.py" in files
    used: set[tuple[str, str]] = set()
    offending = []
    for path in files:
        relative = path.relative_to(REPO).as_posix()
        for name, line in _bare_raises(path):
            if (relative, name) in ALLOWED:
                used.add((relative, name))
            else:
                offending.append(f"{relative}:{line}: raise {name}")
    assert not offending, f"raise a class from the package's exceptions.py instead: {offending}"
    assert set(ALLOWED) == used, f"allow-list entries that match nothing any more: {sorted(set(ALLOWED) - used)}"
