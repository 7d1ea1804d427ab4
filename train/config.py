"""One dataclass holds every training setting; the checkpoint stores it (as nanoGPT's model_args)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


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
        return cls(**{k: v for k, v in data.items() if k in known})

    def generator_config(self) -> dict[str, Any]:
        return {"ngf": self.ngf, "n_blocks": self.n_blocks, "upsample": self.upsample}
