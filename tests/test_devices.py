"""--device coreml / directml where the onnxruntime build has them (loud where it does not), and the
message when no ONNX Runtime is installed (the cpu / gpu extras)."""

from __future__ import annotations

import sys
from typing import ClassVar

import pytest

from imgxlate import engine as eng
from imgxlate.errors import DeviceError


@pytest.mark.parametrize(("device", "provider", "hint"), [
    ("coreml", "CoreMLExecutionProvider", "pip install 'onnxruntime>=1.20'"),
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
    with pytest.raises(DeviceError, match=r"ONNX Runtime is not installed: `pip install 'onnxruntime>=1.20'`.*"
                                          r"`pip install 'onnxruntime-gpu>=1.20'`.*never both"):
        eng.available_providers()


class _FallingBackSession:
    """What onnxruntime's InferenceSession does when the CUDA provider fails to start (an old driver):
    prints its EP Error banner on stdout and runs on the CPU."""

    made: ClassVar[list[object]] = []

    def __init__(self, src: object, so: object, providers: object = None) -> None:
        print("*************** EP Error ***************")
        # as a Linux build prints it (microsoft/onnxruntime#21435): source locations and C++ signatures
        # of several hundred characters before the reason
        sig = ("std::conditional_t<THRW, void, onnxruntime::common::Status> onnxruntime::CudaCall(ERRTYPE, const "
               "char*, const char*, ERRTYPE, const char*, const char*, int) [with ERRTYPE = cudaError; bool THRW = "
               "true; SUCCTYPE = cudaError; std::conditional_t<THRW, void, onnxruntime::common::Status> = void]")
        print(f"EP Error /onnxruntime_src/onnxruntime/core/providers/cuda/cuda_call.cc:122 {sig} "
              f"/onnxruntime_src/onnxruntime/core/providers/cuda/cuda_call.cc:114 {sig} CUDA failure 35: CUDA "
              "driver version is insufficient for CUDA runtime version ; GPU=0 ; hostname=gpu1 ; "
              "file=/onnxruntime_src/onnxruntime/core/providers/cuda/cuda_execution_provider.cc ; line=280 ; "
              f"expr=cudaSetDevice(info_.device_id);  when using {providers}")
        print("Falling back to ['CPUExecutionProvider'] and retrying.")
        _FallingBackSession.made.append(so)

    def get_providers(self) -> list[str]:
        return ["CPUExecutionProvider"]


def test_a_cuda_provider_that_fails_to_start_is_reported_with_its_reason(monkeypatch: pytest.MonkeyPatch,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The reason ONNX Runtime printed (here an old driver) reaches the user instead of "install the
    NVIDIA libraries", and nothing is printed on stdout (it must stay clean for --json)."""
    ort = eng._ort()
    monkeypatch.setattr(ort, "InferenceSession", _FallingBackSession)
    monkeypatch.setattr(eng, "available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(eng, "_driver_present", lambda: True)
    monkeypatch.setattr(eng, "_preload_cuda_libraries", lambda: "")
    ok, why = eng._probe_cuda_uncached()
    assert not ok and why.startswith("CUDA failure 35: CUDA driver version is insufficient for CUDA runtime "
                                     "version; "), why
    with pytest.raises(DeviceError, match=r"fell back to the CPU for this model \(CUDA failure 35"):
        eng.make_session(b"model", "CUDAExecutionProvider", threads=8)
    assert capsys.readouterr().out == ""
    # a CUDA session gets one CPU thread (the tiler makes dozens of sessions), a CPU one what was asked
    assert _FallingBackSession.made[-1].intra_op_num_threads == 1
