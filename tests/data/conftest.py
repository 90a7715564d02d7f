"""Fixtures shared by the data-stage tests."""

from __future__ import annotations

import pytest
from helpers.stub_clip import stub_clip

import sce.data.dataset as dataset_mod
from sce.data.clip import ClipInputs, WindowSpec
from sce.data.schema import ClipRecord


@pytest.fixture
def stub_loader(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the clip loader by a fixed clip with telemetry; returns the ids it was asked for."""
    calls: list[str] = []
    clip = stub_clip()

    def fake_load_clip(record: ClipRecord, spec: WindowSpec, cache=None) -> ClipInputs:
        calls.append(record.id)
        return clip

    monkeypatch.setattr(dataset_mod, "load_clip", fake_load_clip)
    return calls
