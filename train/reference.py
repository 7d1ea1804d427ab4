"""Generators trained by the reference implementation, imported into verified imgxlate models.

The CycleGAN authors' code (junyanz/pytorch-CycleGAN-and-pix2pix) saves its generators, and publishes
its pretrained ones (horse2zebra, summer2winter_yosemite, style_vangogh, ...), as PyTorch state dicts
of its ``ResnetGenerator``: the tensors of one ``nn.Sequential``, keyed ``model.N.weight``. That is the
module layout of :class:`~imgxlate.train.networks.ResnetGenerator` with ``upsample="transpose"`` and
``down_padding="zeros"``:

    index   0  1     2   3      4 5 6        7 8 9        10 .. 10+n-1   then  ConvT, IN, ReLU (x2)  Pad Conv Tanh
            Pad Conv IN ReLU    Conv IN ReLU  Conv IN ReLU  n blocks             ...                  ...  17+n ...

The blocks' inner ``nn.Sequential`` is called ``conv_block`` there and ``block`` here, and files saved
by PyTorch before 0.4 carry running statistics for InstanceNorm layers that never used them. So an
import renames keys, drops those, checks the rest one to one (names and shapes) against a generator
built from the sizes the file implies, and exports through the same verified path as a trained run.

What the keys cannot tell: the reference's blocks pad by reflection (``padding_type`` has a
'replicate' choice, which none of its options reaches: ``define_G`` always builds reflect blocks).
A generator edited to pad by replication has the same keys and would import with the wrong padding;
zero-padded blocks (``padding_type='zero'``) have a conv at ``conv_block.0`` and are refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from imgxlate.errors import UsageError
from imgxlate.train.networks import ResnetGenerator

REFERENCE = "junyanz/pytorch-CycleGAN-and-pix2pix"
_BLOCK = re.compile(r"^model\.(\d+)\.conv_block\.(\d+)\.(weight|bias)$")
# Statistics an InstanceNorm layer saved by PyTorch < 0.4 carried, unused (track_running_stats=False).
_UNUSED_STATS = (".running_mean", ".running_var", ".num_batches_tracked")
# A pair name written as the reference's pretrained files are: horse2zebra, summer2winter_yosemite.
_PAIR_NAME = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*?)2([A-Za-z][A-Za-z0-9_-]*?)(?:_pretrained)?$")


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a reference ``.pth`` file, loaded without running code from it."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} does not exist or is not a file; pass a generator's .pth file "
                         "(e.g. latest_net_G_A.pth, or a pretrained horse2zebra.pth)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors alike for foreign files
        raise UsageError(
            f"{path} is not a PyTorch state dict that loads safely ({type(exc).__name__}); pass a generator "
            "saved by the reference implementation (torch.save(net.state_dict()))"
        ) from exc
    if not isinstance(state, Mapping) or not state or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        keys = sorted(map(str, state))[:6] if isinstance(state, Mapping) else []
        raise UsageError(
            f"{path} is not a generator's state dict (a mapping of parameter names to tensors)"
            + (f"; its top-level keys are {', '.join(keys)}" if keys else "")
            + ": pass the file of one generator, e.g. latest_net_G_A.pth"
        )
    return dict(state)


def convert_state(state: Mapping[str, torch.Tensor], where: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A reference generator's state dict -> (this project's state dict, generator config).

    Raises UsageError naming what does not fit: another generator family (U-Net), batch norm, other
    channel counts, or keys and shapes that are not the reference ResNet's.
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from nn.DataParallel
    if any(k.startswith("model.model.") for k in state):
        raise UsageError(f"{where} is a U-Net generator (the reference's --netG unet_128/unet_256, pix2pix's "
                         "default); imgxlate imports ResNet generators (--netG resnet_9blocks / resnet_6blocks)")
    if "model.1.weight" not in state or state["model.1.weight"].ndim != 4:
        raise UsageError(f"{where} is not a reference ResNet generator: it has no model.1.weight (the 7x7 "
                         "first convolution); pass a generator saved by the reference implementation")
    if "model.2.weight" in state:  # the first norm has parameters: batch norm, or an affine instance norm
        what = ("batch normalization (--norm batch)" if "model.2.running_mean" in state else
                "instance normalization with learnt scale and shift (affine=True)")
        raise UsageError(f"{where} was trained with {what}; imgxlate's generators use instance normalization "
                         "without parameters (the reference's CycleGAN default, --norm instance)")
    if any(k.endswith(".conv_block.0.weight") for k in state):  # a conv first: no padding layer before it
        raise UsageError(f"{where} has zero-padded residual blocks (padding_type='zero'); imgxlate imports the "
                         "reference's reflection-padded blocks")
    state = {k: v for k, v in state.items() if not k.endswith(_UNUSED_STATS)}
    dropout = any(m and m.group(2) == "6" for m in map(_BLOCK.match, state))
    renamed = {}
    for key, value in state.items():
        m = _BLOCK.match(key)
        if m:  # with --use_dropout the second conv sits one later (a Dropout before its pad)
            inner = "5" if dropout and m.group(2) == "6" else m.group(2)
            key = f"model.{m.group(1)}.block.{inner}.{m.group(3)}"
        renamed[key] = value
    stem = renamed["model.1.weight"]
    ngf, in_channels = int(stem.shape[0]), int(stem.shape[1])
    n_blocks = len({int(m.group(1)) for m in map(_BLOCK.match, state) if m})
    head = renamed.get(f"model.{17 + n_blocks}.weight")
    out_channels = int(head.shape[0]) if head is not None and head.ndim == 4 else 3
    if (in_channels, out_channels) != (3, 3):
        raise UsageError(f"{where} maps {in_channels} channels to {out_channels}; imgxlate translates RGB "
                         "images (3 channels to 3: the reference's --input_nc 3 --output_nc 3)")
    config = {"ngf": ngf, "n_blocks": n_blocks, "upsample": "transpose", "down_padding": "zeros"}
    expected = ResnetGenerator(**config).state_dict()
    missing = sorted(set(expected) - set(renamed))
    unexpected = sorted(set(renamed) - set(expected))
    wrong = sorted(k for k in set(expected) & set(renamed) if tuple(expected[k].shape) != tuple(renamed[k].shape))
    if missing or unexpected or wrong:
        # named as the file names them (conv_block), not as renamed here
        missing, unexpected, wrong = ([k.replace(".block.", ".conv_block.") for k in keys]
                                      for keys in (missing, unexpected, wrong))
        parts = [f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("other shape", wrong))
                 if keys]
        raise UsageError(
            f"{where} is not the reference ResNet generator (ngf {ngf}, {n_blocks} blocks, reflection-padded "
            f"blocks, transposed-convolution upsampling) that imgxlate imports ({'; '.join(parts)})"
        )
    return {k: v.float() for k, v in renamed.items()}, {**config, "dropout_dropped": dropout}


def pair_names(files: Mapping[str, Path], name_a: str | None, name_b: str | None) -> tuple[str, str]:
    """The domain names: given, or read from a file or its folder named as the reference's pretrained
    models are (``horse2zebra.pth``, or ``horse2zebra_pretrained/latest_net_G.pth`` as its download
    script saves it: as a2b horse / zebra; as b2a zebra / horse)."""
    if name_a and name_b:
        return name_a, name_b
    for direction, path in files.items():
        m = _PAIR_NAME.match(path.stem) or _PAIR_NAME.match(path.resolve().parent.name)
        if m:
            source, target = m.group(1), m.group(2)
            a, b = (source, target) if direction == "a2b" else (target, source)
            return name_a or a, name_b or b
    raise UsageError("cannot tell the domain names from the file names; pass --name-a and --name-b "
                     "(e.g. --name-a horse --name-b zebra)")


def sample_inputs(size: int) -> list[torch.Tensor] | None:
    """The bundled sample photos as export-check inputs (real images check the parity better than
    noise); None when they are not installed."""
    import imgxlate
    from imgxlate.train.export import verify_inputs

    samples = Path(imgxlate.__file__).parent / "samples"
    return verify_inputs(sorted(samples.glob("*.jpg")), size) if samples.is_dir() else None


def import_generators(
    files: Mapping[str, str | Path],
    out_dir: str | Path,
    name_a: str | None = None,
    name_b: str | None = None,
    image_size: int = 256,
    overwrite: bool = False,
) -> list[Any]:
    """Import reference generators (``files``: {"a2b": path, "b2a": path}, one or both) into
    ``out_dir`` as a verified imgxlate model folder; returns the export reports."""
    from imgxlate.train.export import export_generators

    if not files:
        raise UsageError("pass --a2b FILE, --b2a FILE or both: the generators to import")
    from imgxlate.registry.install import file_sha256

    paths = {d: Path(p) for d, p in files.items()}
    states = {d: load_state(path) for d, path in paths.items()}  # a missing file before any name question
    a, b = pair_names(paths, name_a, name_b)
    gens, configs, facts = {}, {}, {}
    for direction, path in paths.items():
        state, config = convert_state(states[direction], str(path))
        configs[direction] = {k: v for k, v in config.items() if k != "dropout_dropped"}
        gen = ResnetGenerator(**configs[direction])
        gen.load_state_dict(state, strict=True)
        gens[direction] = gen.eval()
        facts[direction] = {"file": path.name, "sha256": file_sha256(path), "dropout_dropped": config["dropout_dropped"]}
    if len({tuple(sorted(c.items())) for c in configs.values()}) > 1:
        sizes = ", ".join(f"{d}: ngf {c['ngf']}, {c['n_blocks']} blocks" for d, c in configs.items())
        raise UsageError(f"the two generators differ in size ({sizes}); import them as two models")
    verify = sample_inputs(image_size)
    training = {"method": "cyclegan", "imported_from": facts, "implementation": REFERENCE}
    return export_generators(
        gens, out_dir, a, b, next(iter(configs.values())), image_size, steps=0, epochs=0.0,
        training=training, verify={d: verify for d in gens}, overwrite=overwrite,
    )
