"""sce.data lists its stages in flow order, and every stage imports only the stages above it
(issue 13 point 1: the package reads as the data flow)."""

from __future__ import annotations

import re
from pathlib import Path

from test_import_graph import import_graph

import sce.data

DATA = Path(sce.data.__file__).parent


def listed_stages() -> list[str]:
    """The module names of sce/data/__init__.py's stage list ("- name  what it does")."""
    return re.findall(r"^- (\w+)\s", sce.data.__doc__, flags=re.MULTILINE)


def test_every_data_module_is_listed_once():
    stages = listed_stages()
    modules = sorted(p.stem for p in DATA.glob("*.py") if p.stem != "__init__")
    assert len(stages) == len(set(stages)) == 14
    assert sorted(stages) == modules


def test_each_stage_imports_only_earlier_stages():
    graph = import_graph()
    stages = [f"sce.data.{s}" for s in listed_stages()]
    backwards = {
        stage: sorted(imp for imp in graph[stage] if imp in stages[i:])
        for i, stage in enumerate(stages)
    }
    assert {stage: later for stage, later in backwards.items() if later} == {}


def test_data_imports_no_offline_tool():
    graph = import_graph()
    stages = [name for name in graph if name.startswith("sce.data")]
    assert {s: sorted(i for i in graph[s] if i.startswith("sce.prepare")) for s in stages} == {
        s: [] for s in stages
    }


def test_every_offline_tool_is_listed_once():
    import sce.prepare

    listed = re.findall(r"^- (\w+)/?\s", sce.prepare.__doc__, flags=re.MULTILINE)
    folder = Path(sce.prepare.__file__).parent
    modules = sorted(p.stem if p.is_file() else p.name for p in folder.iterdir() if _is_module(p))
    assert len(listed) == len(set(listed)) == 9
    assert sorted(listed) == modules


def _is_module(path: Path) -> bool:
    if path.is_dir():
        return (path / "__init__.py").is_file()
    return path.suffix == ".py" and path.stem != "__init__"
