"""Quiet, honest commands (issue 15 point 8): sce's own options documented, ignored ones hidden,
known-harmless noise silenced, `sce budget` fails when a config does not fit itself."""

from __future__ import annotations

import logging
import re
import warnings

import pytest
from helpers.paths import EXPERIMENTS

from sce.cli import ADVERTISEMENT_PREFIX, KNOWN_HARMLESS_WARNINGS, main, quiet_known_noise


def _help_entries(text: str) -> dict[str, str]:
    """flag -> its help text (description and the type/default note)."""
    entries, flag = {}, None
    for line in text.splitlines():
        match = re.match(r"  (--[\w.]+)( [A-Z_\[\],.{}a-z]*)?(.*)$", line)
        if match and line.startswith("  --"):
            flag = match.group(1)
            entries[flag] = match.group(3).strip()
        elif flag and line.startswith(" " * 24):
            entries[flag] += " " + line.strip()
        else:
            flag = None
    return entries


def test_fit_help_documents_every_sce_option_and_hides_ignored_ones(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    entries = _help_entries(capsys.readouterr().out)
    ours = {f: h for f, h in entries.items() if f.startswith(("--model.", "--data."))}
    assert len(ours) > 50
    undocumented = [f for f, h in ours.items() if re.match(r"^\((type|required)", h)]
    assert undocumented == []
    assert "--optimizer" not in entries and "--lr_scheduler" not in entries


def test_known_harmless_warnings_and_the_advertisement_are_silenced():
    import lightning.pytorch  # noqa: F401

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_known_noise()
        warnings.warn(
            "LightningCLI's args parameter is intended to run from within Python", stacklevel=1
        )
        warnings.warn(
            "`is_gradient_checkpointing` is deprecated and will be removed in v6.", stacklevel=1
        )
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", stacklevel=1)
        warnings.warn("a warning sce does not know", stacklevel=1)
    assert [str(w.message) for w in caught] == ["a warning sce does not know"]
    assert len(KNOWN_HARMLESS_WARNINGS) == 4
    from lightning.pytorch.utilities.rank_zero import rank_zero_info

    seen = []

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    collect, level = Collect(), logger.level
    logger.addHandler(collect)
    logger.setLevel(logging.INFO)
    try:
        rank_zero_info(f"{ADVERTISEMENT_PREFIX}: For seamless cloud logging, try installing ...")
        rank_zero_info("Seed set to 0")
    finally:
        logger.removeHandler(collect)
        logger.setLevel(level)
    assert seen == ["Seed set to 0"]


def test_budget_exits_nonzero_when_a_config_does_not_fit_its_own_max_length(capsys):
    config = str(EXPERIMENTS / "paper001_sft.yaml")
    assert main(["budget", "--config", config]) == 0  # 13,043 of 18,432 tokens (video only)
    assert main(["budget", "--config", config, "--data.max_length=12288"]) == 1
    out = capsys.readouterr().out
    assert "does not fit its own data.max_length (13,043 > 12,288 tokens)" in out
    assert "inputs: video only" in out
    assert "the case reported: one event-question item" in out
