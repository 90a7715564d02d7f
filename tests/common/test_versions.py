"""The lock the README's figures come from: what `make setup` installs, and what an unlocked
install is told (issue 27, "a reproducible demo")."""

from __future__ import annotations

import configparser
import json
import platform
import re
import sys
from pathlib import Path

import pytest
from helpers.paths import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from sce.common import versions
from sce.common.versions import LockError, lock_lines, read_lock, unlocked_warning, write_lock

HASH = "ab" * 32


def _item(name: str, version: str, **download) -> dict:
    return {"metadata": {"name": name, "version": version}, "download_info": download}


def test_the_lock_pins_every_report_entry_with_its_hash_sorted(tmp_path: Path) -> None:
    report = {
        "install": [
            _item("Torch", "2.14.1", archive_info={"hashes": {"sha256": HASH}}),
            _item("sce", "0.1.0", url="file:///repo", dir_info={"editable": True}),
            _item("PyYAML", "6.0.4", archive_info={"hashes": {"sha256": "cd" * 32}}),
        ]
    }
    assert lock_lines(report) == [
        f"pyyaml==6.0.4 \\\n    --hash=sha256:{'cd' * 32}",
        f"torch==2.14.1 \\\n    --hash=sha256:{HASH}",
    ]
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    lock = write_lock(path, tmp_path / "requirements.lock")
    assert read_lock(lock) == {"pyyaml": "6.0.4", "torch": "2.14.1"}


def test_a_report_entry_without_a_hash_is_refused() -> None:
    with pytest.raises(LockError, match="numpy 2.0.0 has no sha256"):
        lock_lines({"install": [_item("numpy", "2.0.0", archive_info={})]})


def test_a_malformed_lock_line_names_the_file_and_line(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("# header\ntorch>=2.0\n")
    with pytest.raises(LockError, match=r"requirements.lock:2: expected name==version"):
        read_lock(lock)


def test_the_makefile_installs_the_lock_with_hashes() -> None:
    makefile = (REPO / "Makefile").read_text()
    setup_recipe = makefile.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    assert "LOCK := requirements.lock" in makefile
    assert "$(LOCK)" in setup_recipe.splitlines()[0]  # a changed lock re-installs
    assert "pip install --require-hashes -r $(LOCK)" in setup_recipe
    assert "pip install --no-deps -e ." in setup_recipe


def test_the_lock_covers_every_declared_requirement() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    declared = cfg["options"]["install_requires"] + cfg["options.extras_require"]["dev"]
    names = {canonicalize_name(Requirement(r).name) for r in declared.split("\n") if r.strip()}
    pins = read_lock(versions.LOCK_FILE)
    assert names - set(pins) == set()
    for line in versions.LOCK_FILE.read_text().splitlines():
        if "==" in line:
            assert re.fullmatch(r"[a-z0-9-]+==[\w.+!-]+ \\", line), line


@pytest.mark.skipif(
    (sys.platform, platform.machine(), sys.version_info[:2]) != ("linux", "x86_64", (3, 11)),
    reason="the lock is for Linux x86_64, Python 3.11",
)
def test_this_install_is_the_lock() -> None:
    """`make test` runs in the venv `make setup` built from the lock: every version matches."""
    assert unlocked_warning() is None


def test_an_unlocked_install_is_told_which_versions_differ(tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"pytest==0.0.1 \\\n    --hash=sha256:{HASH}\nno-such-dist==1.0\n")
    message = unlocked_warning(lock)
    assert "in 2 package(s)" in message
    assert "no-such-dist: not installed (lock 1.0)" in message
    assert re.search(r"pytest: [\d.]+ \(lock 0\.0\.1\)", message)
    assert unlocked_warning(tmp_path / "missing.lock") is None
