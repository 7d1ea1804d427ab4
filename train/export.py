"""Export trained generators to self-describing ONNX files, then verify them.

Each direction becomes one fp32 ONNX file with dynamic batch, height and width and the imgxlate JSON
metadata in ``metadata_props``. Every export is checked with ``onnx.checker`` and compared with
PyTorch on real inputs at two sizes (one not a multiple of 4) before it is renamed into place.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgxlate._atomic import atomic_path, write_bytes_atomic
from imgxlate._version import __version__
from imgxlate.errors import InvalidModelError
from imgxlate.metadata import METADATA_KEY, ModelMetadata

PARITY_TOLERANCE = 1e-3  # max abs difference, ORT vs PyTorch, on outputs in [-1, 1]
OPSET = 18


@dataclass
class ExportReport:
    path: Path
    max_abs_diff: float
    sizes: list[tuple[int, int]]
    bytes: int
    model: Any = None  # the onnx.ModelProto written (a template for the other direction)


def _torch_to_onnx_bytes(gen: torch.nn.Module, example: torch.Tensor) -> bytes:
    """Trace ``gen`` with the dynamo exporter: a clean graph (Conv/Pad/InstanceNormalization nodes)
    that the exact tiler can cut at its InstanceNorm layers."""
    from torch.export import Dim

    # Dim names must be valid identifiers; H and W only need to be multiples of 4 at run time,
    # but torch.export wants plain symbolic dims here.
    dynamic = {"x": {0: Dim("batch", min=1, max=4096), 2: Dim("height", min=8), 3: Dim("width", min=8)}}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(
            gen,
            (example,),
            input_names=["input"],
            output_names=["output"],
            dynamo=True,
            dynamic_shapes=dynamic,
            opset_version=OPSET,
            external_data=False,
            verbose=False,
        )
    return program.model_proto.SerializeToString()


def _reweighted(template: Any, gen: torch.nn.Module) -> Any | None:
    """A copy of ONNX ``template`` (exported from a generator of the same architecture) carrying the
    weights of ``gen``; None when its initializers do not map one to one onto ``gen``'s parameters.

    The dynamo exporter names initializers by parameter path (``model.1.weight``), so the second
    direction of a pair needs no second (slow) trace. The parity check afterwards still compares the
    result with ``gen`` itself, so a wrong mapping cannot go unnoticed.
    """
    import onnx
    from onnx import numpy_helper

    state = {k: v.detach().float().cpu().numpy() for k, v in gen.state_dict().items()}
    model = onnx.ModelProto()
    model.CopyFrom(template)
    names = {init.name for init in model.graph.initializer}
    if not set(state) <= names:
        return None
    for init in model.graph.initializer:
        if init.name in state:
            array = state[init.name]
            if tuple(init.dims) != array.shape or init.data_type != onnx.TensorProto.FLOAT:
                return None
            init.CopyFrom(numpy_helper.from_array(array, init.name))
    return model


def export_generator(
    gen: torch.nn.Module,
    path: str | os.PathLike[str],
    metadata: ModelMetadata,
    verify_inputs: list[torch.Tensor] | None = None,
    template: Any | None = None,
) -> ExportReport:
    """Export one generator to ``path`` (atomically) with ``metadata``; verify before renaming.

    ``verify_inputs``: (1, 3, H, W) tensors in [-1, 1] (real images preferably); default two random
    inputs at ``image_size`` and at a size that is not a multiple of 4. ``template``: an
    ``onnx.ModelProto`` exported from a generator of the same architecture, reused with this
    generator's weights instead of tracing again (falls back to tracing when it does not fit).
    """
    import onnx
    import onnxruntime as ort

    path = Path(path)
    gen = gen.eval().float().to("cpu")
    size = max(16, int(metadata.image_size))
    if verify_inputs is None:
        g = torch.Generator().manual_seed(0)
        verify_inputs = [
            torch.rand(1, 3, size, size, generator=g) * 2 - 1,
            torch.rand(1, 3, size // 2 + 6, size // 2 - 2, generator=g) * 2 - 1,
        ]
    model = _reweighted(template, gen) if template is not None else None
    if model is None:
        example = torch.zeros(1, 3, size, size)
        model = onnx.load_from_string(_torch_to_onnx_bytes(gen, example))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata.to_json()
    model.producer_name, model.producer_version = "imgxlate", __version__
    model.doc_string = f"imgxlate CycleGAN generator {metadata.source} -> {metadata.target}"
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString()

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    worst, sizes = 0.0, []
    for x in verify_inputs:
        with torch.no_grad():
            ref = gen(x.float()).numpy()
        out = session.run(None, {"input": x.numpy().astype(np.float32)})[0]
        if out.shape != ref.shape:
            raise InvalidModelError(f"export check failed: ONNX output {out.shape} vs PyTorch {ref.shape}")
        worst = max(worst, float(np.abs(out - ref).max()))
        sizes.append((int(x.shape[2]), int(x.shape[3])))
    if worst > PARITY_TOLERANCE:
        raise InvalidModelError(
            f"export check failed: ONNX Runtime differs from PyTorch by {worst:.2e} (> {PARITY_TOLERANCE})"
        )
    write_bytes_atomic(path, data)
    return ExportReport(path=path, max_abs_diff=worst, sizes=sizes, bytes=len(data), model=model)


def make_metadata(
    direction: str,
    name_a: str,
    name_b: str,
    gen_config: dict[str, Any],
    image_size: int,
    steps: int,
    epochs: float,
    training: dict[str, Any] | None = None,
) -> ModelMetadata:
    source, target = (name_a, name_b) if direction == "a2b" else (name_b, name_a)
    return ModelMetadata(
        pair=f"{name_a}2{name_b}",
        direction=direction,
        source=source,
        target=target,
        domain_a=name_a,
        domain_b=name_b,
        image_size=int(image_size),
        architecture={"generator": "resnet", **gen_config},
        steps=int(steps),
        epochs=float(epochs),
        created=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        imgxlate_version=__version__,
        training=dict(training or {}),
    )


MODEL_CARD = """# {pair}: {a} <-> {b}

CycleGAN generator pair exported by imgxlate {version}.

| file | translates |
|---|---|
| `a2b.onnx` | {a} -> {b} |
| `b2a.onnx` | {b} -> {a} |

- Architecture: ResNet generator, ngf {ngf}, {n_blocks} residual blocks, upsampling `{upsample}`,
  InstanceNorm; trained on {image_size} px crops.
- Trained for {steps} steps ({epochs:.2f} epochs).
- Inputs and outputs: float32 NCHW RGB in [-1, 1]; height and width multiples of 4 (imgxlate pads
  and crops any size).
- Verified at export: onnx.checker, ONNX Runtime vs PyTorch max abs difference {diff:.2e} at sizes {sizes}.

Training facts:

```
{training}
```

Use it: `imgxlate convert PHOTOS --model {folder} --to {b} --out OUT`.
"""


def export_pair(
    gen_a2b: torch.nn.Module,
    gen_b2a: torch.nn.Module,
    out_dir: str | os.PathLike[str],
    name_a: str,
    name_b: str,
    gen_config: dict[str, Any],
    image_size: int,
    steps: int,
    epochs: float,
    training: dict[str, Any] | None = None,
    verify_a: list[torch.Tensor] | None = None,
    verify_b: list[torch.Tensor] | None = None,
) -> list[ExportReport]:
    """Write ``out_dir/a2b.onnx``, ``out_dir/b2a.onnx`` and a model card ``README.md``."""
    import json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reports: list[ExportReport] = []
    for direction, gen, verify in (("a2b", gen_a2b, verify_a), ("b2a", gen_b2a, verify_b)):
        meta = make_metadata(direction, name_a, name_b, gen_config, image_size, steps, epochs, training)
        template = reports[0].model if reports else None  # b2a reuses the a2b graph (same architecture)
        reports.append(export_generator(gen, out_dir / f"{direction}.onnx", meta, verify, template))
    card = MODEL_CARD.format(
        pair=f"{name_a}2{name_b}",
        a=name_a,
        b=name_b,
        version=__version__,
        ngf=gen_config.get("ngf"),
        n_blocks=gen_config.get("n_blocks"),
        upsample=gen_config.get("upsample", "transpose"),
        image_size=image_size,
        steps=steps,
        epochs=epochs,
        diff=max(r.max_abs_diff for r in reports),
        sizes=", ".join(f"{h}x{w}" for h, w in reports[0].sizes),
        training=json.dumps(training or {}, indent=2, sort_keys=True),
        folder=out_dir,
    )
    with atomic_path(out_dir / "README.md") as tmp:
        tmp.write_text(card, encoding="utf-8")
    return reports
