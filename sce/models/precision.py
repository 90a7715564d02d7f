"""Weight dtypes by name: the one place a `dtype` option ("auto", "bfloat16", ...) becomes a
torch dtype, for training (`model.dtype`), export and inference (`--dtype`).

"auto" is bfloat16 on CUDA and float32 elsewhere: CPUs run bf16 matmuls slowly or not at all,
and the tiny kit's pinned losses are float32 numbers.
"""

from __future__ import annotations

from typing import Literal

import torch

from sce.common.choices import check_choice, choices_of

DtypeName = Literal["auto", "float32", "bfloat16", "float16"]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
assert ("auto", *DTYPES) == choices_of(DtypeName)


def resolve_dtype(
    name: str, device: torch.device | str | None = None, option: str = "model.dtype"
) -> torch.dtype:
    """The torch dtype of a dtype name. "auto" is bfloat16 when `device` is a CUDA device (with
    no device: when this machine has CUDA), else float32. An unknown name raises a ValueError
    naming `option` and the choices."""
    if name == "auto":
        return torch.bfloat16 if _is_cuda(device) else torch.float32
    check_choice(option, name, DtypeName)
    return DTYPES[name]


def _is_cuda(device: torch.device | str | None) -> bool:
    if device is None:
        return torch.cuda.is_available()
    return torch.device(device).type == "cuda"


def dtype_name(dtype: torch.dtype) -> str:
    """The name of a torch dtype (torch.bfloat16 -> "bfloat16"), as `model.dtype` spells it."""
    return next(name for name, value in DTYPES.items() if value == dtype)
