"""``services.common.__all__`` is the list of contracts other teams rely on: keep it whole and true.

As httpx's ``tests/test_exported_members.py``: every exported name must exist, come from the module
it claims, and the events module, which is all contract, must be exported in full.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import pytest

import services.common as common
from services.common import events

INIT = Path(common.__file__)
HEAVY = ("pydantic", "pydantic_settings", "nats", "opentelemetry", "faststream", "aiohttp")


def _type_checking_imports() -> dict[str, str]:
    """name → module of the ``if TYPE_CHECKING:`` imports in services/common/__init__.py."""
    tree = ast.parse(INIT.read_text())
    [block] = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
    ]
    return {
        alias.asname or alias.name: node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


def _defined_public_names(module: ModuleType) -> set[str]:
    """Public names a module defines itself (classes, functions, constants), not what it imports."""
    names: set[str] = set()
    for node in ast.parse(Path(module.__file__).read_text()).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    # A TypeVar (``E``) is typing machinery, not a contract.
    return {n for n in names if not n.startswith("_") and not isinstance(getattr(module, n), TypeVar)}


class TestExportedMembers:
    def test_all_is_unique(self):
        assert len(common.__all__) == len(set(common.__all__))

    @pytest.mark.parametrize("name", common.__all__)
    def test_each_name_exists_and_comes_from_its_module(self, name):
        value = getattr(common, name)
        origin = common._ORIGIN[name]
        assert getattr(importlib.import_module(origin), name) is value
        if hasattr(value, "__module__") and not isinstance(value, str | int | tuple):
            assert value.__module__ == origin, f"{name} is defined in {value.__module__}, not {origin}"

    def test_lazy_map_type_checking_imports_and_all_agree(self):
        assert set(common._ORIGIN) == set(common.__all__)
        assert _type_checking_imports() == common._ORIGIN

    def test_every_public_name_of_events_is_exported(self):
        missing = sorted(_defined_public_names(events) - set(common.__all__))
        assert not missing, f"add to services/common/__init__.py (__all__, _MODULES, TYPE_CHECKING): {missing}"

    def test_star_import_gives_every_exported_name(self):
        namespace: dict[str, object] = {}
        exec("from services.common import *", namespace)
        assert set(common.__all__) <= set(namespace)

    def test_submodules_still_import_through_the_package(self):
        from services.common import settings as settings_module

        assert isinstance(settings_module, ModuleType)
        with pytest.raises(AttributeError, match="no attribute 'not_a_contract'"):
            _ = common.not_a_contract

    def test_importing_the_package_or_the_errors_stays_light(self):
        """``import services.common`` runs before every submodule import, so it must not load nats or pydantic."""
        code = (
            "import sys\n"
            "import services.common\n"
            "from services.common import KubescribeError, TemporaryError\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))\n"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
        assert result.stdout.strip() == "[]", f"heavy modules loaded: {result.stdout}"
