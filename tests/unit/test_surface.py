"""The package's surface: one import name, a small public API, and parts that import only downhill.

The wheel holds exactly one top-level package, ``slipstream``; its ``__all__`` names are importable and are the
objects of their home modules; ``import slipstream`` loads no part; ``models`` and ``serving`` never import
``streams``; and no part is ever loaded under a second, bare name (``features.x`` beside ``slipstream.features.x``).
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import slipstream

REPO = Path(__file__).resolve().parents[2]
PARTS = ("streams", "features", "models", "serving", "infra", "schemas", "monitoring")


def _python(code: str, cwd: Path) -> str:
    """Run ``code`` in a fresh interpreter of this venv, with the current directory kept off ``sys.path`` (-P)."""
    result = subprocess.run(
        [sys.executable, "-P", "-c", code], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert slipstream.__all__ == sorted(slipstream.__all__)
    assert len(slipstream.__all__) <= 20  # a handful of names, not the whole package
    for name in slipstream.__all__:
        value = getattr(slipstream, name)
        home = importlib.import_module(value.__module__)
        assert getattr(home, name) is value, name
    assert set(slipstream.__all__) <= set(dir(slipstream))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = slipstream.nope  # type: ignore[attr-defined]


def test_the_public_names_cover_what_a_user_needs() -> None:
    from slipstream import Contracts, FeatureSet, Settings, Slipstream, SlipstreamError
    from slipstream.app import Slipstream as Root
    from slipstream.schemas.exceptions import SlipstreamError as Root_error

    assert Slipstream is Root and SlipstreamError is Root_error
    assert {Contracts.__name__, FeatureSet.__name__, Settings.__name__} == {"Contracts", "FeatureSet", "Settings"}


def test_import_loads_no_part(tmp_path: Path) -> None:
    loaded = _python(
        "import sys, slipstream; print(sorted(m for m in sys.modules if m.startswith('slipstream.')))", tmp_path
    )
    assert loaded == "[]"


def test_the_command_line_starts_without_the_heavy_libraries(tmp_path: Path) -> None:
    """Every `slipstream` command imports the CLI first: the model, plotting and dataframe libraries load only in
    the commands that use them (a restarted shadow consumer is back in seconds, `--help` answers at once)."""
    code = (
        "import sys, slipstream.cli\n"
        "heavy = ('lightgbm', 'sklearn', 'onnxruntime', 'mlflow', 'pandas', 'matplotlib', 'scipy', 'feast')\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    assert _python(code, tmp_path) == "[]"


def test_parts_import_only_downhill(tmp_path: Path) -> None:
    code = (
        "import sys, json, importlib\n"
        "out = {}\n"
        "for name in ('slipstream.models.reco', 'slipstream.models.fraud', 'slipstream.serving.http',"
        " 'slipstream.serving.reco', 'slipstream.features.offline', 'slipstream.schemas.contracts'):\n"
        "    importlib.import_module(name)\n"
        "    out[name] = sorted({m.split('.')[1] for m in sys.modules if m.startswith('slipstream.') and '.' in m})\n"
        "print(json.dumps(out))"
    )
    parts = json.loads(_python(code, tmp_path))
    assert "streams" not in parts["slipstream.serving.reco"]
    assert "streams" not in parts["slipstream.serving.http"]
    assert "streams" not in parts["slipstream.models.fraud"]
    assert "streams" not in parts["slipstream.models.reco"]


def test_the_model_watchers_stand_on_models_and_schemas_only(tmp_path: Path) -> None:
    """`monitoring/` scores ONNX challengers and reads and writes contract topics: no engine, no scorer inside."""
    code = (
        "import sys, importlib, json\n"
        "for name in ('slipstream.monitoring.shadow.service', 'slipstream.monitoring.outcomes.processor',"
        " 'slipstream.monitoring.monitor', 'slipstream.monitoring.report', 'slipstream.monitoring.metrics'):\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[1] for m in sys.modules if m.startswith('slipstream.') and '.' in m})))"
    )
    parts = set(json.loads(_python(code, tmp_path)))
    assert parts <= {"monitoring", "models", "schemas", "features"}, parts


def test_no_part_is_importable_or_imported_under_a_bare_name(tmp_path: Path) -> None:
    code = (
        "import importlib, pkgutil, sys, slipstream\n"
        "for info in pkgutil.walk_packages(slipstream.__path__, 'slipstream.'):\n"
        "    if not info.name.endswith(('__main__', '.faust_stage')):\n"
        "        importlib.import_module(info.name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {PARTS!r}))\n"
        "import importlib.util\n"
        f"print([p for p in {PARTS!r} if importlib.util.find_spec(p) is not None])"
    )
    bare_loaded, bare_importable = _python(code, tmp_path).splitlines()
    assert bare_loaded == "[]"
    assert bare_importable == "[]"  # `import models` fails in the venv


@pytest.mark.parametrize("part", PARTS)
def test_a_bare_name_fails_even_from_the_repository(part: str) -> None:
    """Run from the checkout, where the folder is on ``sys.path``, ``import models`` still fails, saying why."""
    result = subprocess.run(
        [sys.executable, "-c", f"import {part}"], cwd=REPO, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode != 0
    assert f"ImportError: import slipstream.{part}, not {part}" in result.stderr


def test_every_module_is_reached_through_the_links() -> None:
    names = {info.name for info in pkgutil.walk_packages(slipstream.__path__, "slipstream.")}
    for part in PARTS:
        assert f"slipstream.{part}" in names
        assert (REPO / "slipstream" / part).is_symlink()
        assert (REPO / "slipstream" / part).resolve() == REPO / part


def test_the_wheel_holds_only_slipstream(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy of what git knows (links kept), so the build writes nothing into the tree
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if name.startswith("tests/") or not os.path.lexists(REPO / name):
            continue
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_symlink():
            target.symlink_to(os.readlink(REPO / name))
        else:
            shutil.copy2(REPO / name, target)
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("slipstream-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"slipstream", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    for part in PARTS:
        assert f"slipstream/{part}/__init__.py" in names
    assert "slipstream/schemas/avro/transaction.avsc" in names  # package data travels under the one name
    assert "slipstream/infra/pom.xml" in names
