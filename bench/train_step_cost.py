"""CPU seconds per training step of CycleGAN, CUT and FastCUT at one size (process time, so the load of
a shared machine does not enter): the same generator, discriminator and batch for every method.

    python bench/train_step_cost.py                       # 256 px, ngf 64, 9 blocks, 2 timed steps each
    python bench/train_step_cost.py --size 64 --ngf 16 --n-blocks 3 --steps 5

One warm-up step, then ``--steps`` timed steps on a fixed random batch, 1 thread, fp32, channels_last.
"""

from __future__ import annotations

import argparse
import json
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--n-blocks", type=int, default=9)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from imgxlate.train.config import TrainConfig
    from imgxlate.train.loop import make_trainer
    from imgxlate.train.runtime import Runtime

    torch.set_num_threads(args.threads)
    rt = Runtime(torch.device("cpu"), None, "fp32")
    out: dict[str, float] = {}
    for method, both in (
        ("cyclegan", False),
        ("cut", False),
        ("fastcut", False),
        ("cut", True),
        ("fastcut", True),
    ):
        cfg = TrainConfig(
            method=method, both_directions=both, ngf=args.ngf, n_blocks=args.n_blocks, image_size=args.size
        )
        cfg.validate()
        trainer = make_trainer(cfg, rt, 100)
        g = torch.Generator().manual_seed(0)
        a, b = (
            (torch.rand(1, 3, args.size, args.size, generator=g) * 2 - 1).contiguous(
                memory_format=torch.channels_last
            )
            for _ in range(2)
        )
        trainer.step(a, b)  # warm-up
        c0 = time.process_time()
        for _ in range(args.steps):
            trainer.step(a, b)
        key = method if method == "cyclegan" else method + ("+both" if both else "")
        out[key] = round((time.process_time() - c0) / args.steps, 3)
        print(
            f"{key:<14} {out[key]:>8.3f} CPU s/step  ({out[key] / out['cyclegan']:.2f}x cyclegan)", flush=True
        )
    print(json.dumps({"size": args.size, "ngf": args.ngf, "n_blocks": args.n_blocks, "cpu_s_per_step": out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
