"""One dataclass holds every training setting; the checkpoint stores it (as nanoGPT's model_args).

Each field is declared once, with its help text, help panel and choices in the field's metadata; the
``imgxlate-train`` options are generated from these declarations (see ``train/options.py``), so a
setting cannot exist in the config without a command-line option or the other way round.

Settings whose default depends on ``--method`` are declared with ``None`` ("the method's default") and
filled in by :meth:`TrainConfig.apply_method_defaults` before training, so a checkpoint stores the
values that were used.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from imgxlate.errors import UsageError, did_you_mean

METHODS = ("cyclegan", "cut", "fastcut")
GAN_MODES = ("lsgan", "vanilla")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cuda", "cpu", "mps")
UPSAMPLES = ("transpose", "resize")
DOWN_PADDINGS = ("reflect", "zeros")
DIRECTIONS = ("a2b", "b2a")


def smallest_crop(n_layers_d: int) -> int:
    """The smallest training crop (a multiple of 4, at least 16) that the PatchGAN discriminator takes:
    each of its ``n_layers_d`` stride-2 convolutions (kernel 4, padding 1) halves the side (rounding
    down), then two kernel-4 stride-1 convolutions take 1 each, and the instance norm before the last
    needs more than one value: the halved side must be at least 3."""
    size = 16
    while True:
        side = size
        for _ in range(n_layers_d):
            side //= 2
        if side >= 3:
            return size
        size += 4


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
    # where the data is, not what it is: a resumed run may find its folders moved (a folder holding
    # other images is said when resuming: the run then is not the uninterrupted one)
    "domain_a",
    "domain_b",
)

# Per-method defaults of the settings declared with None (Park et al. 2020, section 4 and the
# reference implementation's CUT_mode presets; CycleGAN: Zhu et al. 2017).
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "cyclegan": {"pool_size": 50, "lambda_nce": 1.0, "nce_idt": False, "flip_equivariance": False},
    "cut": {"pool_size": 0, "lambda_nce": 1.0, "nce_idt": True, "flip_equivariance": False},
    "fastcut": {"pool_size": 0, "lambda_nce": 10.0, "nce_idt": False, "flip_equivariance": True},
}

P_DATA = "Data"
P_METHOD = "Method"
P_MODEL = "Networks"
P_CYCLE = "CycleGAN losses"
P_CUT = "CUT / FastCUT losses"
P_OPT = "Optimisation"
P_SPEED = "Speed"
P_OUT = "Output and monitoring"


def option(
    default: Any,
    help: str,
    panel: str,
    *,
    flags: tuple[str, ...] = (),
    choices: tuple[str, ...] = (),
    metavar: str | None = None,
) -> Any:
    """A config field that is also a command-line option. ``flags``: the option's spellings when not
    the plain ``--field-name`` (e.g. ``("--out", "-o")`` or ``("--flip/--no-flip",)``)."""
    meta = {"help": help, "panel": panel, "flags": flags, "choices": choices, "metavar": metavar}
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    # data
    domain_a: str = option("", "Folder of domain A images (searched recursively).", P_DATA, metavar="DIR")
    domain_b: str = option("", "Folder of domain B images (searched recursively).", P_DATA, metavar="DIR")
    name_a: str = option("", "Name of domain A (default: its folder name).", P_DATA)
    name_b: str = option("", "Name of domain B (default: its folder name).", P_DATA)
    image_size: int = option(256, "Random crop size (a multiple of 4).", P_DATA)
    load_size: int | None = option(
        None, "The shorter side is resized to this before cropping (default: 286 for 256 px crops, as the "
        "reference; the same ratio for other --image-size values).", P_DATA)
    flip: bool = option(True, "Random horizontal flips.", P_DATA, flags=("--flip/--no-flip",))
    workers: int = option(4, "Data loading processes (0 = in the main process).", P_DATA)
    # method
    method: str = option(
        "cyclegan",
        "cyclegan: two generators and a cycle loss. cut: contrastive (PatchNCE) loss, one generator, "
        "one direction. fastcut: CUT's faster variant (no identity term, stronger NCE).",
        P_METHOD,
        choices=METHODS,
    )
    direction: str = option(
        "a2b", "cut/fastcut: the direction trained (a2b: A -> B).", P_METHOD, choices=DIRECTIONS
    )
    both_directions: bool = option(
        False,
        "cut/fastcut: train both directions (interleaved, one step each per batch) so the run exports "
        "a pair like CycleGAN does.",
        P_METHOD,
        flags=("--both-directions/--one-direction",),
    )
    # networks
    ngf: int = option(64, "Generator width.", P_MODEL)
    ndf: int = option(64, "Discriminator width.", P_MODEL)
    n_blocks: int = option(9, "Residual blocks in the generator.", P_MODEL)
    n_layers_d: int = option(3, "PatchGAN layers (3 = 70x70 patches).", P_MODEL)
    upsample: str = option(
        "transpose",
        "transpose (reference) or resize (nearest + conv: no checkerboard).",
        P_MODEL,
        choices=UPSAMPLES,
    )
    down_padding: str = option(
        "reflect",
        "Padding of the stride-2 down-sampling convs: reflect (no border lines) or zeros (reference).",
        P_MODEL,
        choices=DOWN_PADDINGS,
    )
    # losses
    gan_mode: str = option("lsgan", "Adversarial loss.", P_OPT, choices=GAN_MODES)
    lambda_cycle: float = option(10.0, "Cycle-consistency weight.", P_CYCLE)
    lambda_identity: float = option(0.5, "Identity weight, times lambda-cycle (0 = off).", P_CYCLE)
    pool_size: int | None = option(
        None, "Past fakes kept for each discriminator (default: 50 for cyclegan, 0 for cut/fastcut).", P_OPT
    )
    lambda_gan: float = option(1.0, "cut/fastcut: weight of the adversarial loss.", P_CUT)
    lambda_nce: float | None = option(
        None, "cut/fastcut: weight of the PatchNCE loss (default: 1 for cut, 10 for fastcut).", P_CUT
    )
    nce_idt: bool | None = option(
        None,
        "cut/fastcut: also apply PatchNCE to G(b) vs b, the identity term (default: on for cut, off "
        "for fastcut).",
        P_CUT,
        flags=("--nce-idt/--no-nce-idt",),
    )
    flip_equivariance: bool | None = option(
        None,
        "cut/fastcut: flip the input at random and compare features flipped back (default: on for "
        "fastcut only).",
        P_CUT,
        flags=("--flip-equivariance/--no-flip-equivariance",),
    )
    num_patches: int = option(256, "cut/fastcut: patches sampled per feature layer.", P_CUT)
    nce_temperature: float = option(0.07, "cut/fastcut: temperature of the PatchNCE softmax.", P_CUT)
    nce_dim: int = option(256, "cut/fastcut: output width of the MLP projection heads.", P_CUT)
    # optimisation
    lr: float = option(2e-4, "Adam learning rate.", P_OPT)
    beta1: float = option(0.5, "Adam beta1.", P_OPT)
    beta2: float = option(0.999, "Adam beta2.", P_OPT)
    batch_size: int = option(1, "Images per step (per process).", P_OPT)
    epochs: int = option(100, "Epochs at constant learning rate.", P_OPT)
    epochs_decay: int = option(100, "Epochs of linear decay to 0.", P_OPT)
    max_steps: int = option(0, "Stop after this many steps (0 = the whole schedule).", P_OPT)
    d_warmup_steps: int = option(
        0,
        "Steps at the start that train only the discriminators, the generators frozen; the learning-rate "
        "schedule starts after them. For --init-from an exported pair, whose discriminators start fresh: "
        "without a warm-up, their first judgements pull the trained generators away from their style. "
        "cyclegan only.",
        P_OPT,
    )
    init_from: str = option(
        "",
        "Fine-tune: start from the networks of this checkpoint (a .pt file or a run folder), or from the "
        "generators of a pair it exported (a folder with a2b.onnx and b2a.onnx; the discriminators then "
        "start fresh), with fresh optimisers and this run's schedule. The network settings must match.",
        P_OPT,
        metavar="RUN",
    )
    seed: int = option(0, "Random seed (weights, data order, pools, patch sampling).", P_OPT)
    # speed
    device: str = option("auto", "auto: CUDA when available, else the CPU.", P_SPEED, choices=DEVICES)
    precision: str = option(
        "auto", "auto: bf16 on a CUDA GPU that supports it, else fp32.", P_SPEED, choices=PRECISIONS
    )
    channels_last: bool = option(
        True,
        "NHWC memory layout (faster convolutions on recent GPUs).",
        P_SPEED,
        flags=("--channels-last/--no-channels-last",),
    )
    compile: bool = option(False, "torch.compile the networks.", P_SPEED, flags=("--compile/--no-compile",))
    threads: int = option(
        0, "CPU threads for PyTorch (0 = OMP_NUM_THREADS when set, else the physical cores).", P_SPEED
    )
    # output and monitoring
    out: str = option(
        "",
        "Run folder: checkpoints/, samples/, model/, log.jsonl (default: runs/METHOD).",
        P_OUT,
        flags=("--out", "-o"),
        metavar="DIR",
    )
    checkpoint_every: int = option(1000, "Steps between checkpoints (0 = only at the end).", P_OUT)
    sample_every: int = option(500, "Steps between sample grids (0 = none).", P_OUT)
    log_every: int = option(
        50, "Steps between log.jsonl lines (and progress lines when stderr is not a terminal; 0 = none).", P_OUT
    )
    export: bool = option(True, "Export ONNX models at the end.", P_OUT, flags=("--export/--no-export",))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        # a config saved before --down-padding existed trained with the reference zero padding
        values.setdefault("down_padding", "zeros")
        return cls(**values)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {f.name: f.default for f in fields(cls) if f.default is not MISSING}

    @property
    def one_sided(self) -> bool:
        return self.method != "cyclegan"

    def directions(self) -> tuple[str, ...]:
        """The directions this run trains: both for CycleGAN and --both-directions, else one."""
        if not self.one_sided or self.both_directions:
            return DIRECTIONS
        return (self.direction,)

    def apply_method_defaults(self) -> TrainConfig:
        """Fill the settings left at None with the defaults of ``method`` (in place; returns self)."""
        self.method = str(self.method).lower()
        if not self.out:
            self.out = f"runs/{self.method}"
        if self.load_size is None:  # the reference's 286 for 256 px crops (a random crop of ~90 %)
            self.load_size = round(int(self.image_size) * 286 / 256)
        if self.method in METHOD_DEFAULTS:
            for key, value in METHOD_DEFAULTS[self.method].items():
                if getattr(self, key) is None:
                    setattr(self, key, value)
        return self

    def generator_config(self) -> dict[str, Any]:
        return {
            "ngf": self.ngf,
            "n_blocks": self.n_blocks,
            "upsample": self.upsample,
            "down_padding": self.down_padding,
        }

    def discriminator_config(self) -> dict[str, Any]:
        return {"ndf": self.ndf, "n_layers": self.n_layers_d}

    def network_settings(self) -> dict[str, Any]:
        """Every setting that shapes a checkpointed network: two runs can share weights (``--init-from``)
        exactly when these agree."""
        nets = {"method": self.method, **self.generator_config(), **self.discriminator_config()}
        if self.one_sided:
            nets.update(directions=self.directions(), nce_dim=self.nce_dim)
        return nets

    def resolved_names(self) -> tuple[str, str]:
        """Domain names: the explicit ones, else the folder names (``horses/`` -> ``horses``)."""
        a = self.name_a or Path(self.domain_a).resolve().name or "a"
        b = self.name_b or Path(self.domain_b).resolve().name or "b"
        if a == b:
            a, b = f"{a}_a", f"{b}_b"
        return a, b

    def validate(self, *, folders: bool = True) -> None:
        """Raise UsageError naming the bad setting and its allowed values, one folder for both domains
        and one domain inside the other. ``folders``: also refuse a run folder inside the data (a new
        run, or a resumed run given another --out; a run resumed where it is goes on there)."""
        self.apply_method_defaults()
        for f in fields(self):
            allowed = f.metadata.get("choices")
            value = getattr(self, f.name)
            if allowed and value not in allowed:
                raise UsageError(
                    f"--{f.name.replace('_', '-')} {value!r} is not one of {', '.join(allowed)}"
                    + did_you_mean(str(value), allowed)
                )
        positive = (
            "image_size",
            "load_size",
            "ngf",
            "ndf",
            "n_layers_d",
            "batch_size",
            "num_patches",
            "nce_dim",
        )
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be positive, not {getattr(self, name)}")
        if self.image_size % 4:
            raise UsageError(
                f"--image-size {self.image_size} must be a multiple of 4 (the generator downsamples twice); "
                f"try {self.image_size - self.image_size % 4 or 4}"
            )
        if self.image_size < 16:
            raise UsageError(f"--image-size {self.image_size} is too small; use at least 16")
        if self.load_size < self.image_size:
            # The crops need images at least that large: they were raised silently, and the checkpoint
            # and the model's metadata kept the size given. Raised here, said, and recorded as used.
            import warnings

            warnings.warn(f"--load-size {self.load_size} is smaller than --image-size {self.image_size}: images "
                          f"are resized to {self.image_size} instead (whole, not randomly cropped; the reference "
                          "loads 286 for 256 px crops)", UserWarning, stacklevel=2)
            self.load_size = self.image_size
        least = smallest_crop(int(self.n_layers_d))
        if self.image_size < least:
            raise UsageError(
                f"--image-size {self.image_size} is too small for the discriminator's {self.n_layers_d} "
                f"downsampling layers (--n-layers-d): use at least {least}, or fewer --n-layers-d"
            )
        for name in ("n_blocks", "epochs", "epochs_decay", "max_steps", "d_warmup_steps", "workers", "threads",
                     "pool_size"):
            if int(getattr(self, name)) < 0:
                raise UsageError(f"--{name.replace('_', '-')} must be 0 or more, not {getattr(self, name)}")
        if self.d_warmup_steps and self.method != "cyclegan":
            raise UsageError(f"--d-warmup-steps is for --method cyclegan, not {self.method}; leave it out")
        if self.d_warmup_steps and self.max_steps and self.max_steps <= self.d_warmup_steps:
            raise UsageError(
                f"--max-steps {self.max_steps} ends inside the discriminator warm-up (--d-warmup-steps "
                f"{self.d_warmup_steps}): the generators would not train; raise --max-steps above "
                f"{self.d_warmup_steps} or shorten the warm-up"
            )
        if self.epochs + self.epochs_decay == 0 and self.max_steps == 0:
            raise UsageError("nothing to train: --epochs and --epochs-decay are 0 and --max-steps is not set")
        for name in ("lr", "lambda_cycle", "nce_temperature", "lambda_identity", "lambda_gan", "lambda_nce",
                     "beta1", "beta2"):
            if not math.isfinite(float(getattr(self, name))):  # nan and inf pass every comparison below
                raise UsageError(f"--{name.replace('_', '-')} must be a finite number, not {getattr(self, name)}")
        for name in ("lr", "lambda_cycle", "nce_temperature"):
            if float(getattr(self, name)) <= 0:
                raise UsageError(f"--{name.replace('_', '-')} must be > 0, not {getattr(self, name)}")
        for name in ("lambda_identity", "lambda_gan", "lambda_nce"):
            if float(getattr(self, name)) < 0:
                raise UsageError(f"--{name.replace('_', '-')} must be 0 or more, not {getattr(self, name)}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise UsageError(f"--{name.replace('_', '-')} must be in [0, 1), not {getattr(self, name)}")
        if self.one_sided and self.lambda_gan == 0 and self.lambda_nce == 0:
            raise UsageError("--lambda-gan and --lambda-nce are both 0: the generator would learn nothing")
        for name in ("checkpoint_every", "sample_every", "log_every"):
            if int(getattr(self, name)) < 0:
                raise UsageError(f"--{name.replace('_', '-')} must be 0 (off) or more")
        self._check_folders(out_too=folders)

    def _check_folders(self, out_too: bool) -> None:
        """The two domains must differ and neither may hold the other; with ``out_too``, the run folder
        must not be inside a domain folder (folders are searched recursively: its sample grids would
        become training images of the next run)."""
        if not self.domain_a or not self.domain_b:
            return
        a, b = Path(self.domain_a).resolve(), Path(self.domain_b).resolve()
        if a == b:
            raise UsageError(f"--domain-a and --domain-b are the same folder ({self.domain_a}); CycleGAN learns "
                             "between two different sets of images")
        for (inner, i_opt), (outer, o_opt) in (((a, "--domain-a"), (b, "--domain-b")),
                                               ((b, "--domain-b"), (a, "--domain-a"))):
            if outer in inner.parents:  # folders are searched recursively: inner's images would be in both
                raise UsageError(f"{i_opt} {inner} is inside {o_opt} {outer}, which is searched with its "
                                 f"sub-folders, so its images would be in both domains; give two separate folders")
        out = Path(self.out).resolve() if self.out and out_too else None
        for option, folder in (("--domain-a", a), ("--domain-b", b)):
            if out is not None and (out == folder or folder in out.parents):
                raise UsageError(f"--out {self.out} is inside {option} {folder}: its sample images would be read "
                                 "as training images the next time; choose a run folder outside the data")
