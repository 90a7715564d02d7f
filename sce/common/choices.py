"""String options with a fixed set of values, typed as `Literal[...]` aliases.

Each alias is defined once, next to the code that consumes the option (e.g.
`sce.models.adapters.AdapterMode`). The `sce fit` parser (jsonargparse) reads the Literal from
the constructor signature, so a typo fails before any model loads and `--help` lists the
choices; direct Python construction (notebooks, tests) gets the same check from these helpers,
which read the choices from the alias instead of a second hand-written list.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, get_args


def choices_of(alias: Any) -> tuple[str, ...]:
    """The values a `Literal[...]` alias allows (nested Literals are flattened by typing)."""
    return get_args(alias)


def check_choice(option: str, value: Any, alias: Any) -> None:
    """Raise a ValueError naming `option` and its choices unless `value` is one of them."""
    allowed = choices_of(alias)
    if value not in allowed:
        raise ValueError(f"{option} must be one of {list(allowed)}, got {value!r}")


def check_choices(option: str, values: Iterable[Any], alias: Any) -> None:
    """`check_choice` for every element of a list option (e.g. data.eval_tasks)."""
    allowed = choices_of(alias)
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"{option}: unknown value(s) {unknown}; choose from {list(allowed)}")
