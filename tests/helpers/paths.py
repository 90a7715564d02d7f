"""Where the repository's folders are, for tests at any depth under tests/."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"
FIXTURES = REPO / "tests" / "fixtures"
HELPERS = REPO / "tests" / "helpers"
