"""The house: every package lists its modules in flow order, the packages stand in one declared
order, and no import runs against it (issue 24). sce.data's stages also import only the stages
above them (issue 13)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from helpers.import_graph import SCE, cycles, import_graph

# Lowest first: a module may import only from its own package or from packages before it.
# sce.models.families ranks on its own, below sce.data: the pipeline sizes frames and finds
# answers by the model family's geometry and markers (it imports nothing else from sce).
PACKAGE_ORDER = (
    "sce.common",
    "sce.models.families",
    "sce.metrics",
    "sce.tasks",
    "sce.data",
    "sce.labeling",
    "sce.prepare",
    "sce.models",
    "sce.evaluate",
    "sce.train",
    "sce.deploy",
    "sce.studies",
    "sce.commands",
    "sce.cli",
)
# Packages whose modules are listed in import order: each imports only the ones listed above it.
FLOW_ORDERED = (
    "sce.common",
    "sce.models.families",
    "sce.tasks",
    "sce.data",
    "sce.models",
    "sce.evaluate",
    "sce.train",
    "sce.deploy",
)


def package_of(module: str) -> str:
    """The PACKAGE_ORDER entry `module` belongs to: the longest one that contains it."""
    owners = [p for p in PACKAGE_ORDER if module == p or module.startswith(p + ".")]
    return max(owners, key=len) if owners else ".".join(module.split(".")[:2])


def listed_modules(package: str) -> list[str]:
    """The module names of a package docstring's list ("- name  what it does" lines)."""
    doc = importlib.import_module(package).__doc__ or ""
    return re.findall(r"^- (\w+)/?\s", doc, flags=re.MULTILINE)


def modules_on_disk(package: str) -> list[str]:
    folder = SCE.parent / package.replace(".", "/")
    return sorted(p.stem if p.is_file() else p.name for p in folder.iterdir() if _is_module(p))


def _is_module(path: Path) -> bool:
    if path.is_dir():
        return (path / "__init__.py").is_file()
    return path.suffix == ".py" and path.stem != "__init__"


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == {frozenset("abc")}


def test_graph_sees_function_level_imports():
    graph = import_graph()
    assert "sce.data.video_processing" in graph["sce.train.budget"]  # top level
    assert "sce.train.config" in graph["sce.train.preview"]  # inside preview_command


def test_sce_has_no_import_cycles():
    assert cycles(import_graph()) == set()


def test_every_top_level_module_has_a_place_in_the_order():
    top = {f"sce.{name}" for name in modules_on_disk("sce")}
    assert top == {p for p in PACKAGE_ORDER if p.count(".") == 1}  # sub-packages rank inside


def test_no_import_runs_against_the_package_order():
    rank = {package: i for i, package in enumerate(PACKAGE_ORDER)}
    graph = import_graph()
    against = {
        module: sorted(i for i in imports if rank[package_of(i)] > rank[package_of(module)])
        for module, imports in graph.items()
        if module != "sce"
    }
    assert {m: later for m, later in against.items() if later} == {}


def test_the_order_check_catches_a_backward_import():
    rank = {package: i for i, package in enumerate(PACKAGE_ORDER)}
    assert rank[package_of("sce.data.dataset")] < rank[package_of("sce.train.config")]


@pytest.mark.parametrize(
    "package", [p for p in PACKAGE_ORDER if p not in ("sce.cli", "sce.commands")]
)
def test_every_module_is_listed_once(package):
    listed = listed_modules(package)
    assert len(listed) == len(set(listed))
    assert sorted(listed) == modules_on_disk(package)


@pytest.mark.parametrize("package", FLOW_ORDERED)
def test_each_module_imports_only_earlier_ones(package):
    graph = import_graph()
    stages = [f"{package}.{s}" for s in listed_modules(package)]
    backwards = {
        stage: sorted(
            imp
            for imp in graph[stage]
            if any(imp == s or imp.startswith(s + ".") for s in stages[i + 1 :])
        )
        for i, stage in enumerate(stages)
    }
    assert {stage: later for stage, later in backwards.items() if later} == {}


# tests/ mirrors the packages: tests/data/ tests sce/data/, tests/cli/ the front door. Only the
# checks that span every package stay at the top.
TEST_SUPPORT = {"helpers", "fixtures", "__pycache__"}
TOP_LEVEL_TESTS = {"test_layout.py", "test_fidelity.py"}


def test_test_folders_mirror_the_packages():
    tests = SCE.parent / "tests"
    folders = {p.name for p in tests.iterdir() if p.is_dir()} - TEST_SUPPORT
    top_packages = {p.split(".")[1] for p in PACKAGE_ORDER if p.count(".") == 1}
    assert folders <= top_packages | {"cli"}, sorted(folders - top_packages)
    assert {p.name for p in tests.glob("test_*.py")} == TOP_LEVEL_TESTS
