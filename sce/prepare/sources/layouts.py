"""`sce data prepare --help`: one epilog paragraph per source, read from the converters.

Each paragraph is the record generator's first docstring line, the layout block of its module
docstring (the `::` block naming the generator, else the module's only or first one) and its
`-o KEY=VALUE` options (its keyword-only parameters) with their defaults, so a new converter
documents itself here.
"""

from __future__ import annotations

import inspect
import re
import sys
import textwrap
from collections.abc import Callable


def layout_block(module_doc: str, function_name: str) -> list[str]:
    """The indented lines after the layout's `::` header ("Layout::", "Kaggle layout
    (`nexar_records`)::") that names `function_name` or, when no header names a converter, the
    first one, in a module docstring."""
    lines = module_doc.splitlines()
    headers = [
        i
        for i, line in enumerate(lines)
        if line.rstrip().endswith("::") and "layout" in line.lower()
    ]
    named = [i for i in headers if f"`{function_name}`" in lines[i]]
    if not named and any(re.search(r"`\w+_records`", lines[i]) for i in headers):
        return []
    chosen = (named or headers)[:1]
    block: list[str] = []
    for line in lines[chosen[0] + 1 :] if chosen else []:
        if line.strip() and not line.startswith(" "):
            break
        block.append(line.rstrip())
    return textwrap.dedent("\n".join(line for line in block if line)).splitlines()


def source_options(converter: Callable) -> list[str]:
    """`KEY=DEFAULT` for each source-specific option (keyword-only parameter) of a converter."""
    parameters = inspect.signature(converter).parameters.items()
    return [f"{n}={p.default!r}" for n, p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]


def source_help(name: str, converter: Callable) -> str:
    """The epilog paragraph of one source."""
    summary = (inspect.getdoc(converter) or "").split("\n", 1)[0]
    summary = re.sub(r"\s*\(see the module docstring[^)]*\)", "", summary)
    module_doc = inspect.getdoc(sys.modules[converter.__module__]) or ""
    lines = [f"--source {name}: {summary}"]
    lines += [f"    {line}" for line in layout_block(module_doc, converter.__name__)]
    options = source_options(converter)
    if options:
        lines.append(f"    -o options: {', '.join(options)}")
    return "\n".join(lines)


def prepare_epilog() -> str:
    """Every registered source's layout and options (`sce data prepare --help`)."""
    from sce.prepare.sources import SOURCES

    paragraphs = [source_help(name, converter) for name, converter in SOURCES.items()]
    own = (
        "Own data: `sce data init --source private DIR` writes the private layout with a "
        "README.txt\nexplaining every column and unit (README.md: 'Bring your own data')."
    )
    return "sources:\n\n" + "\n\n".join([*paragraphs, own])
