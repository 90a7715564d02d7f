"""The locked versions the README's figures come from: write the lock, compare an install to it.

`requirements.lock` (repository root) pins every package `make setup` installs, each with the
sha256 of the file pip chose, and the Makefile installs it with `--require-hashes`, so a fresh
clone gets the exact releases that printed the README's demo table. pip writes no lock file
itself, but `pip install --dry-run --report` resolves and hashes everything without installing;
`make lock` turns that report into the lock (`python -m sce.common.versions REPORT`).

An install made another way (`make setup-unlocked`, another platform) still runs: `sce demo`
prints which installed versions differ from the lock, since those decide whether its table can
match the README's.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

LOCK_FILE = Path(__file__).resolve().parents[2] / "requirements.lock"
LOCK_HEADER = """\
# The exact releases `make setup` installs (pip install --require-hashes), Linux x86_64, Python
# 3.11: the versions that produced the README's figures. Written by `make lock`; do not edit.
# Refresh: `make lock`, then `make demo` and re-pin the README's demo table with the new numbers.
"""


class LockError(ValueError):
    """A lock file or pip report that cannot be read."""


def lock_lines(report: dict) -> list[str]:
    """`name==version --hash=sha256:...` per package of a `pip install --report` resolution,
    sorted by name; the project itself (installed editable, no archive) is left out."""
    lines = []
    for item in report.get("install", []):
        meta, download = item["metadata"], item["download_info"]
        digest = download.get("archive_info", {}).get("hashes", {}).get("sha256")
        if "dir_info" in download:
            continue  # the editable project itself: installed from the checkout, no hash
        if digest is None:
            raise LockError(f"pip report: {meta['name']} {meta['version']} has no sha256")
        name = canonicalize_name(meta["name"])
        lines.append(f"{name}=={meta['version']} \\\n    --hash=sha256:{digest}")
    return sorted(lines)


def write_lock(report_path: Path, lock_path: Path = LOCK_FILE) -> Path:
    """Write `lock_path` from the JSON report of `pip install --dry-run --report`."""
    try:
        report = json.loads(Path(report_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LockError(f"{report_path}: not a pip install report ({exc})") from exc
    lock_path.write_text(LOCK_HEADER + "\n".join(lock_lines(report)) + "\n", encoding="utf-8")
    return lock_path


def read_lock(lock_path: Path = LOCK_FILE) -> dict[str, str]:
    """{canonical package name: version} of a lock file."""
    pins = {}
    for number, line in enumerate(lock_path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", "--hash")):
            continue
        name, sep, version = line.split(" ", 1)[0].partition("==")
        if not sep:
            raise LockError(f"{lock_path}:{number}: expected name==version, got {line!r}")
        pins[canonicalize_name(name)] = version
    return pins


def installed_version(name: str) -> str | None:
    """The installed version of distribution `name`, or None when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def version_differences(pins: dict[str, str]) -> list[str]:
    """One line per locked package whose installed version differs ("name: 1.0 (lock 1.1)")."""
    lines = []
    for name, version in sorted(pins.items()):
        found = installed_version(name)
        if found != version:
            lines.append(f"{name}: {found or 'not installed'} (lock {version})")
    return lines


def unlocked_warning(lock_path: Path = LOCK_FILE) -> str | None:
    """A message naming the installed versions that differ from the lock, or None when the
    install matches it (or there is no lock beside the package, as in a wheel install)."""
    if not lock_path.is_file():
        return None
    differences = version_differences(read_lock(lock_path))
    if not differences:
        return None
    listed = "\n  ".join(differences)
    return (
        f"this install differs from {lock_path.name} in {len(differences)} package(s); the "
        f"table can differ from the README's (`make setup` installs the lock):\n  {listed}"
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m sce.common.versions PIP_REPORT.json")
    print(f"wrote {write_lock(Path(sys.argv[1]))}")
