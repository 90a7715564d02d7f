"""One dtype resolver (sce.models.precision) serves training and inference: "auto" is bf16 on
CUDA and fp32 on CPU, per machine for `model.dtype`, per device for `sce infer --dtype`."""

from __future__ import annotations

import pytest
import torch

from sce.deploy.infer import InferError, inference_dtype
from sce.models.module import SceModule
from sce.models.precision import DTYPES, dtype_name, resolve_dtype


def test_named_dtypes_round_trip():
    for name, dtype in DTYPES.items():
        assert resolve_dtype(name) is dtype and dtype_name(dtype) == name
    assert resolve_dtype("float16", device="cuda") is torch.float16  # a name wins over the device


def test_auto_follows_the_machine_for_training(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_dtype("auto") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_dtype("auto") is torch.float32


def test_auto_follows_the_device_for_inference(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the device decides, not this
    assert inference_dtype("auto", torch.device("cpu")) is torch.float32
    assert inference_dtype("auto", torch.device("cuda", 0)) is torch.bfloat16
    assert inference_dtype("bfloat16", torch.device("cpu")) is torch.bfloat16


def test_each_caller_names_its_own_option():
    """`sce fit` (and a direct SceModule) name model.dtype; `sce infer` names --dtype."""
    training = (
        r"model.dtype must be one of \['auto', 'float32', 'bfloat16', 'float16'\], got 'bf16'"
    )
    with pytest.raises(ValueError, match=training):
        resolve_dtype("bf16")
    with pytest.raises(ValueError, match=training):
        SceModule("tiny:0", dtype="bf16")  # checked before any weights load
    inference = r"--dtype must be auto or one of \['float32', 'bfloat16', 'float16'\], got 'bf16'"
    with pytest.raises(InferError, match=inference):
        inference_dtype("bf16", torch.device("cpu"))
