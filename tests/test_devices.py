"""--device coreml / directml where the onnxruntime build has them (loud where it does not), and the
message when no ONNX Runtime is installed (the cpu / gpu extras)."""

from __future__ import annotations

import sys

import pytest

from imgxlate import engine as eng
from imgxlate.errors import DeviceError


@pytest.mark.parametrize(("device", "provider", "hint"), [
    ("coreml", "CoreMLExecutionProvider", "imgxlate[cpu]"),
    ("directml", "DmlExecutionProvider", "onnxruntime-directml"),
])
def test_build_specific_providers(device: str, provider: str, hint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eng, "available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(DeviceError) as info:
        eng.resolve_device(device)
    assert f"--device {device} was asked for" in str(info.value) and provider in str(info.value)
    assert hint in str(info.value) and "CPUExecutionProvider" in str(info.value)
    monkeypatch.setattr(eng, "available_providers", lambda: [provider, "CPUExecutionProvider"])
    assert eng.resolve_device(device) == (provider, "")
    assert eng.resolve_device(device.upper()) == (provider, "")


def test_auto_never_picks_coreml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eng, "available_providers", lambda: ["CoreMLExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(eng, "probe_cuda", lambda: (False, "no CUDA here"))
    assert eng.resolve_device("auto") == ("CPUExecutionProvider", "CUDA not available: no CUDA here")


def test_no_onnxruntime_names_the_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as on an install without it
    with pytest.raises(DeviceError, match=r"ONNX Runtime is not installed: .*imgxlate\[cpu\].*imgxlate\[gpu\]"):
        eng.available_providers()
