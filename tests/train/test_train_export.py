"""Exporting a pair: both directions are checked before either file is written."""

from pathlib import Path

import pytest
import torch

from imgxlate.errors import InvalidModelError
from imgxlate.metadata import read_onnx_metadata
from imgxlate.train.export import export_generators
from imgxlate.train.networks import ResnetGenerator

CFG = {"ngf": 4, "n_blocks": 1}


class _Drifting(ResnetGenerator):
    """PyTorch output that the exported graph does not reproduce (same weights, scaled output)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 0.5


def test_a_failed_check_on_b2a_leaves_the_old_pair(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = tmp_path / "model"
    export_generators({"a2b": ResnetGenerator(**CFG), "b2a": ResnetGenerator(**CFG)}, model, "x", "y", CFG, 32, 1, 0.1)
    old = {p.name: p.read_bytes() for p in model.iterdir()}
    with pytest.raises(InvalidModelError, match="export check failed"):
        export_generators(
            {"a2b": ResnetGenerator(**CFG), "b2a": _Drifting(**CFG)}, model, "x", "y", CFG, 32, 2, 0.2, overwrite=True
        )
    assert {p.name: p.read_bytes() for p in model.iterdir()} == old  # a2b passed its check; not written either
    assert read_onnx_metadata(str(model / "b2a.onnx")).steps == 1


def test_an_overwrite_replaces_both_files_and_the_card(tmp_path: Path) -> None:
    model = tmp_path / "model"
    export_generators({"a2b": ResnetGenerator(**CFG), "b2a": ResnetGenerator(**CFG)}, model, "x", "y", CFG, 32, 1, 0.1)
    export_generators({"a2b": ResnetGenerator(**CFG), "b2a": ResnetGenerator(**CFG)}, model, "x", "y", CFG, 32, 7, 0.7,
                      overwrite=True)
    assert sorted(p.name for p in model.iterdir()) == ["README.md", "a2b.onnx", "b2a.onnx"]
    assert {read_onnx_metadata(str(model / f)).steps for f in ("a2b.onnx", "b2a.onnx")} == {7}
    assert "7" in (model / "README.md").read_text()


def test_a_rename_that_fails_names_its_target_and_says_the_folder_may_be_mixed(tmp_path: Path) -> None:
    """b2a.onnx is a folder, so its rename fails after the card's (renamed first): the message names
    b2a.onnx, not the temp file, and does not claim that nothing was replaced."""
    from imgxlate.errors import ImgxlateError

    model = tmp_path / "model"
    (model / "b2a.onnx").mkdir(parents=True)
    with pytest.raises(ImgxlateError) as err:
        export_generators({"a2b": ResnetGenerator(**CFG), "b2a": ResnetGenerator(**CFG)}, model, "x", "y", CFG, 32,
                          1, 0.1, overwrite=True)
    text = str(err.value)
    assert f"cannot replace {model / 'b2a.onnx'}" in text and "export again with --overwrite" in text
    assert ".imgxlate-tmp-" not in text and "nothing was replaced" not in text
    assert not [p for p in model.iterdir() if p.name.startswith(".imgxlate-tmp-")]


def test_a_runtime_that_cannot_start_is_not_blamed_on_the_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The export's parity check failing to create its ONNX Runtime session (no threads left on the
    machine, as a reviewer's run found) was a traceback after the training."""
    import onnxruntime as ort

    from imgxlate.errors import TrainingError

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Exception during initialization: "
                           "pthread_create failed, error msg: Resource temporarily unavailable")

    monkeypatch.setattr(ort, "InferenceSession", refuse)
    model = tmp_path / "model"
    with pytest.raises(TrainingError, match="could not start ONNX Runtime .*Resource temporarily unavailable.*"
                                            "imgxlate-train export RUN --out DIR"):
        export_generators({"a2b": ResnetGenerator(**CFG), "b2a": ResnetGenerator(**CFG)}, model, "x", "y", CFG, 32, 1,
                          0.1)
    assert not model.exists() or not any(model.iterdir())


def test_a_failed_export_into_a_new_folder_leaves_no_folder(tmp_path: Path) -> None:
    """The folders the export made for --out are removed when nothing was written into them."""
    with pytest.raises(InvalidModelError, match="export check failed"):
        export_generators({"a2b": ResnetGenerator(**CFG), "b2a": _Drifting(**CFG)}, tmp_path / "new" / "model",
                          "x", "y", CFG, 32, 1, 0.1)
    assert list(tmp_path.iterdir()) == []


def test_the_cards_command_can_be_pasted_with_spaces_in_the_folder_and_domain(tmp_path: Path) -> None:
    """`--model runs/my run ü/model --to zebras 2` broke when pasted into a shell."""
    import re
    import shlex

    model = tmp_path / "my run ü" / "model"
    export_generators({"a2b": ResnetGenerator(**CFG), "b2a": ResnetGenerator(**CFG)}, model, "My Horses",
                      "zebras 2", CFG, 32, 1, 0.1)
    (command,) = re.findall(r"Use it: `([^`]+)`", (model / "README.md").read_text(encoding="utf-8"))
    words = shlex.split(command)
    assert words[words.index("--model") + 1] == str(model) and words[words.index("--to") + 1] == "zebras 2"
