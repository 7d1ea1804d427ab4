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
import shlex
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgxlate._atomic import atomic_path
from imgxlate._version import __version__
from imgxlate.engine import session_options
from imgxlate.errors import ImgxlateError, InvalidModelError, TrainingError, UsageError, brief
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
    data: bytes = b""  # the file's bytes


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
    report = build_verified(gen, path, metadata, verify_inputs, template)
    try:
        write_verified(report.path, report.data)
    except OSError as exc:
        raise _write_error(report.path, exc) from exc
    return report


def build_verified(
    gen: torch.nn.Module,
    path: str | os.PathLike[str],
    metadata: ModelMetadata,
    verify_inputs: list[torch.Tensor] | None = None,
    template: Any | None = None,
) -> ExportReport:
    """The ONNX file :func:`export_generator` would write to ``path``, checked and compared with
    PyTorch, in memory (``report.data``): nothing is written."""
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
    method = str(metadata.training.get("method", "cyclegan"))
    model.doc_string = f"imgxlate {method} generator {metadata.source} -> {metadata.target}"
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString()

    try:  # the runtime's own failures (no threads left, no memory) are not the model's
        session = ort.InferenceSession(data, session_options(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ONNX Runtime's errors have no common base class
        raise TrainingError(
            f"the export's check could not start ONNX Runtime ({brief(exc)}); nothing was written and the "
            "checkpoint is kept: export it again (`imgxlate-train export RUN --out DIR`) once the machine has "
            "threads and memory to spare"
        ) from exc
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
    return ExportReport(path=path, max_abs_diff=worst, sizes=sizes, bytes=len(data), model=model, data=data)


def write_verified(path: Path, data: bytes) -> None:
    """Write ``data`` atomically (temp file, fsync, rename) after reading the temp file back: a short
    write (full disk) fails here instead of leaving a truncated model under its final name."""
    with atomic_path(path) as tmp:
        _write_read_back(tmp, data)


def _write_read_back(tmp: Path, data: bytes) -> None:
    """Write ``data`` to ``tmp``, flushed and fsynced, and check that it reads back as written."""
    import hashlib

    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    if hashlib.sha256(tmp.read_bytes()).hexdigest() != hashlib.sha256(data).hexdigest():
        raise OSError(f"{tmp} did not read back as written")


def write_all_verified(files: dict[Path, bytes]) -> None:
    """Write several files as one: every temp file is written and read back before any is renamed, so
    a full disk or a failed check on the last one leaves every target as it was."""
    path = next(iter(files), Path())
    try:
        with contextlib.ExitStack() as stack:  # on leaving: every temp renamed, or every one removed
            for path, data in files.items():
                _write_read_back(stack.enter_context(atomic_path(path)), data)
    except ImgxlateError:
        raise  # a full disk (DiskFullError) already names its file and what to do
    except OSError as exc:
        if exc.filename2:  # a rename onto its target failed: the ones renamed before it are in place
            from imgxlate._atomic import explain_write_error

            target = Path(exc.filename2)
            raise ImgxlateError(
                f"cannot replace {target} ({explain_write_error(exc)}); the files renamed before it are "
                f"new, so {target.parent} may now mix two exports: fix the cause and export again with --overwrite"
            ) from exc
        raise _write_error(path, exc) from exc


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


METHOD_TITLES = {
    "cyclegan": "CycleGAN (Zhu et al. 2017)",
    "cut": "CUT, contrastive unpaired translation (Park et al. 2020)",
    "fastcut": "FastCUT (Park et al. 2020)",
}

MODEL_CARD = """# {pair}: {a} <-> {b}

{what} exported by imgxlate {version}; trained with {title}.

| file | translates |
|---|---|
{rows}

- Architecture: ResNet generator, ngf {ngf}, {n_blocks} residual blocks, upsampling `{upsample}`,
  InstanceNorm; trained on {image_size} px crops.
- {trained}
- Inputs and outputs: float32 NCHW RGB in [-1, 1]; height and width multiples of 4 (imgxlate pads
  and crops any size).
- Verified at export: onnx.checker, ONNX Runtime vs PyTorch max abs difference {diff:.2e} at sizes {sizes}.

Training facts:

```
{training}
```

Use it: `imgxlate convert IMAGES --model {folder} --to {target} --out OUT`.
"""


def _trained_clause(training: dict[str, Any], steps: int, epochs: float) -> str:
    """The card's line on how the generators were trained: steps here, or the files they came from."""
    imported = training.get("imported_from")
    if imported:
        files = ", ".join(f"`{f['file']}` (sha256 {f['sha256'][:16]}...)" for f in imported.values())
        return (f"Imported from {files}: trained outside imgxlate by {training.get('implementation')}, for "
                "steps this file does not record.")
    return f"Trained for {steps} steps ({epochs:.2f} epochs){_warmup_clause(training, steps)}."


def _warmup_clause(training: dict[str, Any] | None, steps: int) -> str:
    """The card's words for a discriminator warm-up (``--d-warmup-steps``): its steps are counted in
    ``steps`` but did not move the generators."""
    warm = int((training or {}).get("d_warmup_steps") or 0)
    if warm <= 0:
        return ""
    return f", of which the first {min(warm, steps)} trained only the discriminators ({max(steps - warm, 0)} generator steps)"


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
    overwrite: bool = False,
) -> list[ExportReport]:
    """Write ``out_dir/a2b.onnx``, ``out_dir/b2a.onnx`` and a model card ``README.md`` (see
    :func:`export_generators` for ``overwrite``)."""
    return export_generators(
        {"a2b": gen_a2b, "b2a": gen_b2a},
        out_dir,
        name_a,
        name_b,
        gen_config,
        image_size,
        steps,
        epochs,
        training,
        {"a2b": verify_a, "b2a": verify_b},
        overwrite,
    )


def export_generators(
    gens: dict[str, torch.nn.Module],
    out_dir: str | os.PathLike[str],
    name_a: str,
    name_b: str,
    gen_config: dict[str, Any],
    image_size: int,
    steps: int,
    epochs: float,
    training: dict[str, Any] | None = None,
    verify: dict[str, list[torch.Tensor] | None] | None = None,
    overwrite: bool = False,
) -> list[ExportReport]:
    """Write ``out_dir/DIRECTION.onnx`` for each generator in ``gens`` (keys ``a2b``/``b2a``: a pair,
    or one direction for a one-sided CUT run) and a model card ``README.md``.

    A folder that already holds a model is refused (UsageError) unless ``overwrite``; then a direction
    file of the old model that this export does not write is removed, so the folder never pairs two
    different models."""
    import json

    out_dir = Path(out_dir)
    with new_folder(out_dir):  # a failed check, a full disk or a stop leaves no empty folder behind
        existing = [name for name in MODEL_FILES if (out_dir / name).exists()]
        if existing and not overwrite:
            raise UsageError(f"{out_dir} already holds {', '.join(existing)}, which the export would replace; pass "
                             "--overwrite to replace them, or choose another --out")
        training = dict(training or {})
        method = str(training.get("method", "cyclegan"))
        reports: list[ExportReport] = []
        for direction in ("a2b", "b2a"):
            if direction not in gens:
                continue
            meta = make_metadata(direction, name_a, name_b, gen_config, image_size, steps, epochs, training)
            template = reports[0].model if reports else None  # b2a reuses the a2b graph (same architecture)
            reports.append(
                build_verified(
                    gens[direction], out_dir / f"{direction}.onnx", meta, (verify or {}).get(direction), template
                )
            )
        rows = [
            f"| `{r.path.name}` | {(name_a, name_b)[r.path.stem == 'b2a']} -> {(name_b, name_a)[r.path.stem == 'b2a']} |"
            for r in reports
        ]
        card = MODEL_CARD.format(
            pair=f"{name_a}2{name_b}",
            a=name_a,
            b=name_b,
            what="Generator pair" if len(reports) == 2 else "One-direction generator",
            title=METHOD_TITLES.get(method, method),
            rows="\n".join(rows),
            version=__version__,
            ngf=gen_config.get("ngf"),
            n_blocks=gen_config.get("n_blocks"),
            upsample=gen_config.get("upsample", "transpose"),
            image_size=image_size,
            trained=_trained_clause(training, steps, epochs),
            diff=max(r.max_abs_diff for r in reports),
            sizes=", ".join(f"{h}x{w}" for h, w in reports[0].sizes),
            training=json.dumps(training, indent=2, sort_keys=True),
            # pasted into a shell: a run folder or a domain with spaces must stay one word
            folder=shlex.quote(str(out_dir)),
            target=shlex.quote(name_b if reports[0].path.stem == "a2b" else name_a),
        )
        # Both directions are built and checked before anything is written, and written before anything
        # is renamed: a failed check or a full disk leaves an existing model folder as it was.
        write_all_verified({**{r.path: r.data for r in reports}, out_dir / "README.md": card.encode("utf-8")})
        try:
            for direction in ("a2b", "b2a"):
                if direction not in gens:  # the old model's other direction: not this model's
                    (out_dir / f"{direction}.onnx").unlink(missing_ok=True)
        except OSError as exc:
            raise _write_error(out_dir, exc) from exc
        return reports


# What an exported model folder holds (a folder with any of them already holds a model).
MODEL_FILES = ("a2b.onnx", "b2a.onnx", "README.md")


@contextlib.contextmanager
def new_folder(folder: Path) -> Iterator[None]:
    """:func:`ensure_folder` for the block; the folders it made are removed again when the block fails
    and left them empty."""
    made = [f for f in (folder, *folder.parents) if not f.exists()]
    ensure_folder(folder)
    try:
        yield
    except BaseException:
        remove_empty(made)
        raise


def remove_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` (deepest first) that is empty; one that holds anything is kept."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def ensure_folder(folder: Path) -> None:
    """Create ``folder`` (and parents); a clean error when a file is in the way."""
    for parent in (folder, *folder.parents):
        if parent.exists() and not parent.is_dir():
            raise UsageError(f"{parent} is a file, not a folder; choose another output folder")
        if parent.is_dir():
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the folder {folder} ({exc.strerror or exc})") from exc


def _write_error(path: Path, exc: OSError) -> ImgxlateError:
    from imgxlate.train.checkpoint import write_failure

    return ImgxlateError(f"cannot write {path} ({write_failure(exc, path.parent)}); nothing was replaced")


# ----------------------------------------------------------------------------------------------------
# from a checkpoint

TRAINING_FACT_KEYS = (
    "method",
    "dataset_sizes",
    "steps",
    "epochs",
    "batch_size",
    "world_size",
    "precision",
    "device",
    "wall_time_s",
    "images_per_s",
    "command",
    "gan_mode",
    "lambda_cycle",
    "lambda_identity",
    "d_warmup_steps",
    "fine_tuned_from",
    "lambda_gan",
    "lambda_nce",
    "nce_idt",
    "flip_equivariance",
    "num_patches",
    "nce_temperature",
    "lr",
    "seed",
    "image_size",
    "load_size",
)


def training_facts(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The facts of a checkpoint that go into the model metadata and card (method included)."""
    facts = dict(ckpt.get("facts", {}))
    facts.setdefault("method", ckpt.get("config", {}).get("method", "cyclegan"))
    return {k: facts[k] for k in TRAINING_FACT_KEYS if k in facts}


def verify_inputs(files: list[Path], size: int) -> list[torch.Tensor] | None:
    """Real images at the crop size and at an odd size that is not a multiple of 4, for the export check."""
    from imgxlate.train import data as data_mod

    for path in files[:20]:
        with contextlib.suppress(Exception):
            odd = (size // 2 + 6, size // 2 - 2)  # e.g. 134x126 for 256: not multiples of 4
            return [data_mod.center_tensor(path, size, size), data_mod.center_tensor(path, *odd)]
    return None


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    verify_a: list[torch.Tensor] | None = None,
    verify_b: list[torch.Tensor] | None = None,
    overwrite: bool = False,
) -> list[ExportReport]:
    """Export the generators of ``checkpoint`` (file or run folder) to ``out_dir``/{a2b,b2a}.onnx: both
    for CycleGAN and two-direction CUT runs, the trained one for a one-direction CUT run.

    Verification inputs (the source domain of each direction) default to real images of the training
    folders when they still exist.
    """
    from imgxlate.train import data as data_mod
    from imgxlate.train.checkpoint import load_checkpoint
    from imgxlate.train.config import TrainConfig
    from imgxlate.train.networks import build_generator

    ckpt = load_checkpoint(checkpoint)
    cfg = TrainConfig.from_dict(ckpt["config"])
    gens = {}
    for direction, key in (("a2b", "G_ab"), ("b2a", "G_ba")):
        if key in ckpt["models"]:
            gen = build_generator(ckpt["generator_config"])
            gen.load_state_dict(ckpt["models"][key])
            gens[direction] = gen.eval()
    size = cfg.image_size
    if verify_a is None and "a2b" in gens:
        with contextlib.suppress(Exception):
            verify_a = verify_inputs(data_mod.find_images(cfg.domain_a), size)
    if verify_b is None and "b2a" in gens:
        with contextlib.suppress(Exception):
            verify_b = verify_inputs(data_mod.find_images(cfg.domain_b), size)
    name_a, name_b = ckpt.get("names") or cfg.resolved_names()
    gcfg = {
        k: v
        for k, v in ckpt["generator_config"].items()
        if k in ("ngf", "n_blocks", "upsample", "down_padding")
    }
    return export_generators(
        gens,
        out_dir,
        name_a,
        name_b,
        gcfg,
        image_size=size,
        steps=int(ckpt["step"]),
        epochs=float(ckpt.get("epoch", 0.0)),
        training=training_facts(ckpt),
        verify={"a2b": verify_a, "b2a": verify_b},
        overwrite=overwrite,
    )
