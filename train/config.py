"""One dataclass holds every training setting; the checkpoint stores it (as nanoGPT's model_args)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from imgxlate.errors import UsageError, did_you_mean

GAN_MODES = ("lsgan", "vanilla")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cuda", "cpu", "mps")
UPSAMPLES = ("transpose", "resize")
DOWN_PADDINGS = ("reflect", "zeros")

# Settings a resumed run may change without breaking exact continuation (they do not touch the maths
# or the data order). Everything else comes from the checkpoint.
RESUME_OVERRIDABLE = (
    "max_steps",
    "workers",
    "threads",
    "device",
    "compile",
    "checkpoint_every",
    "sample_every",
    "log_every",
    "export",
    "out",
)


@dataclass
class TrainConfig:
    # data
    domain_a: str = ""
    domain_b: str = ""
    name_a: str = ""  # default: folder name of domain_a
    name_b: str = ""
    image_size: int = 256  # random crop size
    load_size: int = 286  # resize (shorter side) before the crop
    flip: bool = True
    workers: int = 4
    # model
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9
    n_layers_d: int = 3
    upsample: str = "transpose"  # "transpose" (reference) or "resize" (no checkerboard)
    down_padding: str = "reflect"  # stride-2 convs: "reflect" (no border lines) or "zeros" (reference)
    # losses
    gan_mode: str = "lsgan"  # "lsgan" or "vanilla"
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5  # times lambda_cycle
    pool_size: int = 50
    # optimisation
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    batch_size: int = 1
    epochs: int = 100  # constant learning rate
    epochs_decay: int = 100  # then linear decay to 0
    max_steps: int = 0  # 0 = run the whole schedule
    seed: int = 0
    # speed
    device: str = "auto"  # auto | cuda | cpu | mps
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    channels_last: bool = True
    compile: bool = False
    threads: int = 0  # CPU threads for torch; 0 = torch default
    # output and monitoring
    out: str = "runs/cyclegan"
    checkpoint_every: int = 1000
    sample_every: int = 500
    log_every: int = 50
    export: bool = True
    export_fp16: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        # a config saved before --down-padding existed trained with the reference zero padding
        values.setdefault("down_padding", "zeros")
        return cls(**values)

    def generator_config(self) -> dict[str, Any]:
        return {
            "ngf": self.ngf,
            "n_blocks": self.n_blocks,
            "upsample": self.upsample,
            "down_padding": self.down_padding,
        }

    def discriminator_config(self) -> dict[str, Any]:
        return {"ndf": self.ndf, "n_layers": self.n_layers_d}

    def resolved_names(self) -> tuple[str, str]:
        """Domain names: the explicit ones, else the folder names (``horses/`` -> ``horses``)."""
        a = self.name_a or Path(self.domain_a).resolve().name or "a"
        b = self.name_b or Path(self.domain_b).resolve().name or "b"
        if a == b:
            a, b = f"{a}_a", f"{b}_b"
        return a, b

    def validate(self) -> None:
        """Raise UsageError naming the bad setting and its allowed values."""

        def choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
            if value not in allowed:
                raise UsageError(
                    f"--{name.replace('_', '-')} {value!r} is not one of {', '.join(allowed)}"
                    + did_you_mean(value, allowed)
                )

        choice("gan_mode", self.gan_mode, GAN_MODES)
        choice("precision", self.precision, PRECISIONS)
        choice("device", self.device, DEVICES)
        choice("upsample", self.upsample, UPSAMPLES)
        choice("down_padding", self.down_padding, DOWN_PADDINGS)
        positive = ("image_size", "load_size", "ngf", "ndf", "n_layers_d", "batch_size", "pool_size")
        for name in positive:
            if int(getattr(self, name)) < (0 if name == "pool_size" else 1):
                raise UsageError(f"--{name.replace('_', '-')} must be positive, not {getattr(self, name)}")
        if self.image_size % 4:
            raise UsageError(
                f"--image-size {self.image_size} must be a multiple of 4 (the generator downsamples twice); "
                f"try {self.image_size - self.image_size % 4 or 4}"
            )
        if self.image_size < 16:
            raise UsageError(f"--image-size {self.image_size} is too small; use at least 16")
        for name in ("n_blocks", "epochs", "epochs_decay", "max_steps", "workers", "threads"):
            if int(getattr(self, name)) < 0:
                raise UsageError(f"--{name.replace('_', '-')} must be 0 or more, not {getattr(self, name)}")
        if self.epochs + self.epochs_decay == 0 and self.max_steps == 0:
            raise UsageError("nothing to train: --epochs and --epochs-decay are 0 and --max-steps is not set")
        for name in ("lr", "lambda_cycle"):
            if float(getattr(self, name)) <= 0:
                raise UsageError(f"--{name.replace('_', '-')} must be > 0, not {getattr(self, name)}")
        if self.lambda_identity < 0:
            raise UsageError(f"--lambda-identity must be 0 or more, not {self.lambda_identity}")
        for name in ("checkpoint_every", "sample_every", "log_every"):
            if int(getattr(self, name)) < 0:
                raise UsageError(f"--{name.replace('_', '-')} must be 0 (off) or more")
