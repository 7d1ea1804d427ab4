"""Does the trainer learn? CycleGAN, CUT and FastCUT on two synthetic unpaired domains with a known
true mapping.

Domain A: random smooth colour-blob scenes. Domain B: *independently drawn* scenes of the same kind
seen through a fixed invertible colour transform T (a channel permutation plus per-channel gain and
offset). InstanceNorm cannot undo T by itself: a permutation moves content between channels, and the
gains/offsets change absolute colours that the generator's last layers (after the last norm) must
produce. No pair (a, T(a)) is ever shown to the trainer.

After training (through the real pipeline: image folders -> imgxlate.train.loop.train -> exported ONNX),
held-out A images are translated with ``a2b.onnx`` (ONNX Runtime) and compared with T(a):

    PSNR(G_ab(a), T(a))   vs   identity baseline PSNR(a, T(a))   vs   mean-image baseline PSNR(mean B, T(a))

and the same for b2a against T^-1. A trainer that learns beats the mean baseline by several dB.
CUT and FastCUT are one-sided; they run with ``--both-directions`` so both directions are measured.
Every method trains on the same data with the same networks, steps, batch and learning rate, one after
the other on the same machine, so their images/s compare.

    python bench/learning_check.py                        # CycleGAN, ~5 min on 2 cores
    python bench/learning_check.py --method cyclegan,cut,fastcut --json results.json
    python bench/learning_check.py --quick                # ~1 min smoke run per method

The CycleGAN identity loss is off by default here (``--lambda-identity 0``): it pulls G_ab(b) towards
b, which a colour transform deliberately violates (it exists to preserve colours in photo<->painting
tasks). CUT keeps its own identity term (PatchNCE on G(b) vs b, the paper's default): it asks for the
same *content* at each position, which a colour transform does not violate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

# T in [0, 1] RGB: out[c] = GAIN[c] * in[PERM[c]] + OFFSET[c]; maps [0, 1] into [0, 1] without clipping.
PERM = (2, 0, 1)
GAIN = np.array([0.9, 0.7, 1.0], dtype=np.float64)
OFFSET = np.array([0.05, 0.2, 0.0], dtype=np.float64)


def transform(x: np.ndarray) -> np.ndarray:
    """T on (..., H, W, 3) float images in [0, 1]."""
    return x[..., PERM] * GAIN + OFFSET


def inverse_transform(y: np.ndarray) -> np.ndarray:
    x = np.empty_like(y)
    x[..., PERM] = (y - OFFSET) / GAIN
    return x


# Scene colours are drawn around fixed, channel-asymmetric centres, with sky on top and ground below.
# This makes the true mapping identifiable from unpaired data: were every colour uniform in the RGB
# cube, the distribution of A would be invariant under channel permutations, and a CycleGAN could
# equally well learn any permutation (the first version of this check did, and scored below the mean
# baseline). Here the top of a B image can only come from the top of an A image through T.
SKY = np.array([0.35, 0.55, 0.85])
GROUND = np.array([0.45, 0.60, 0.20])
PALETTE = np.array([[0.90, 0.30, 0.20], [0.95, 0.85, 0.30], [0.30, 0.20, 0.15]])


def scene(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random scene (size, size, 3) in [0, 1]: sky-to-ground gradient plus 2-4 soft blobs."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    c0 = np.clip(SKY + rng.uniform(-0.12, 0.12, 3), 0, 1)
    c1 = np.clip(GROUND + rng.uniform(-0.12, 0.12, 3), 0, 1)
    horizon = rng.uniform(0.35, 0.65)
    tilt = rng.uniform(-0.15, 0.15)
    # Soft horizon: a logistic step across a slightly tilted line.
    t = 1.0 / (1.0 + np.exp(-(yy - horizon - tilt * (xx - 0.5)) * 12.0))
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    for _ in range(rng.integers(2, 5)):
        cy, cx = rng.uniform(0, 1, 2)
        radius = rng.uniform(0.06, 0.18)
        weight = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))[..., None]
        colour = np.clip(PALETTE[rng.integers(len(PALETTE))] + rng.uniform(-0.08, 0.08, 3), 0, 1)
        img = img * (1 - weight) + colour * weight
    return np.clip(img, 0.0, 1.0)


def to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def psnr(x: np.ndarray, y: np.ndarray) -> float:
    """PSNR in dB of uint8-range images given as floats in [0, 1] (peak 1)."""
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def make_data(root: Path, n_train: int, n_test: int, size: int, seed: int) -> dict[str, np.ndarray]:
    """Write train folders root/A, root/B; return held-out images (as stored: 8-bit) in [0, 1]."""
    rng = np.random.default_rng(seed)
    for name in ("A", "B"):
        (root / name).mkdir(parents=True, exist_ok=True)
    train_b = []
    for i in range(n_train):
        Image.fromarray(to_u8(scene(rng, size))).save(root / "A" / f"a_{i:04d}.png")
        b = to_u8(transform(scene(rng, size)))  # an independent scene, not T of the A image above
        train_b.append(b)
        Image.fromarray(b).save(root / "B" / f"b_{i:04d}.png")
    test_a = np.stack([to_u8(scene(rng, size)) for _ in range(n_test)]).astype(np.float64) / 255.0
    test_b = np.stack([to_u8(transform(scene(rng, size))) for _ in range(n_test)]).astype(np.float64) / 255.0
    mean_b = np.mean(np.stack(train_b).astype(np.float64) / 255.0, axis=0)
    mean_a = np.mean(
        np.stack(
            [np.asarray(Image.open(p), dtype=np.float64) / 255.0 for p in sorted((root / "A").iterdir())]
        ),
        axis=0,
    )
    return {"test_a": test_a, "test_b": test_b, "mean_a": mean_a, "mean_b": mean_b}


def run_onnx(path: Path, images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) in [0, 1] -> generator output, same layout and range."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = (images.transpose(0, 3, 1, 2) * 2.0 - 1.0).astype(np.float32)
    out = sess.run(None, {"input": x})[0]
    return np.clip((out.transpose(0, 2, 3, 1).astype(np.float64) + 1.0) / 2.0, 0.0, 1.0)


def run_method(
    method: str, root: Path, data: dict[str, np.ndarray], args: argparse.Namespace, steps: int
) -> dict:
    """Train ``method`` through the real pipeline and measure both directions against the truth."""
    from imgxlate.train.config import TrainConfig
    from imgxlate.train.loop import train

    spe = max(1, args.train_images // args.batch_size)
    half = max(1, -(-steps // (2 * spe)))  # epochs of constant lr, then as many of decay
    crop = args.size - 8
    cfg = TrainConfig(
        domain_a=str(root / "data" / "A"),
        domain_b=str(root / "data" / "B"),
        name_a="scenes",
        name_b="tscenes",
        out=str(root / f"run-{method}"),
        method=method,
        both_directions=True,
        image_size=crop,
        load_size=args.size,
        ngf=args.ngf,
        ndf=args.ngf,
        n_blocks=args.n_blocks,
        batch_size=args.batch_size,
        lr=args.lr,
        lambda_identity=args.lambda_identity,
        lambda_nce=args.lambda_nce,
        epochs=half,
        epochs_decay=half,
        max_steps=steps,
        workers=0,
        threads=args.threads,
        seed=args.seed,
        checkpoint_every=0,
        sample_every=0,
        log_every=50,
        export=True,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    result = train(cfg, command="bench/learning_check.py " + " ".join(sys.argv[1:]))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0  # export included in both
    model = root / f"run-{method}" / "model"
    ta, tb = data["test_a"], data["test_b"]
    target_ab, target_ba = transform(ta), inverse_transform(tb)
    fake_b, fake_a = run_onnx(model / "a2b.onnx", ta), run_onnx(model / "b2a.onnx", tb)

    def mean_psnr(pred: np.ndarray, target: np.ndarray) -> float:
        return float(np.mean([psnr(p, t) for p, t in zip(pred, target)]))

    rows = {
        "a2b": {
            "model": mean_psnr(fake_b, target_ab),
            "identity": mean_psnr(ta, target_ab),
            "mean_image": mean_psnr(np.broadcast_to(data["mean_b"], ta.shape), target_ab),
        },
        "b2a": {
            "model": mean_psnr(fake_a, target_ba),
            "identity": mean_psnr(tb, target_ba),
            "mean_image": mean_psnr(np.broadcast_to(data["mean_a"], tb.shape), target_ba),
        },
    }
    keys = ("image_size", "ngf", "n_blocks", "batch_size", "lr", "epochs", "epochs_decay")
    keys += ("lambda_identity",) if method == "cyclegan" else ("lambda_nce", "nce_idt", "flip_equivariance")
    return {
        "method": method,
        "steps": result.steps,
        "wall_s": round(wall, 1),
        "images_per_s": round(result.images_per_s, 2),
        # CPU seconds of this process per training image (export included): steadier than images/s
        # on a machine shared with other work
        "cpu_s_per_image": round(cpu / max(1, result.steps * cfg.batch_size), 4),
        "config": {k: getattr(cfg, k) for k in keys},
        "train_images": args.train_images,
        "test_images": args.test_images,
        "psnr_db": rows,
        "margin_over_mean_db": {d: round(r["model"] - r["mean_image"], 2) for d, r in rows.items()},
        "final_losses": {k: round(v, 4) for k, v in result.losses.items()},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short smoke run (~1 min per method)")
    ap.add_argument(
        "--method", default="cyclegan", help="comma-separated: cyclegan, cut, fastcut (default cyclegan)"
    )
    ap.add_argument("--steps", type=int, default=0, help="training steps (default 1200, quick 300)")
    ap.add_argument("--size", type=int, default=40, help="image size; crops are size-8")
    ap.add_argument("--train-images", type=int, default=200)
    ap.add_argument("--test-images", type=int, default=32)
    ap.add_argument("--ngf", type=int, default=16)
    ap.add_argument("--n-blocks", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--lambda-identity", type=float, default=0.0)
    ap.add_argument(
        "--lambda-nce", type=float, default=None, help="cut/fastcut: the method's default if unset"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, default=None, help="keep the run folder here instead of a temp dir")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    args = ap.parse_args(argv)
    steps = args.steps or (300 if args.quick else 1200)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    from imgxlate._atomic import atomic_path

    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    with tempfile.TemporaryDirectory(prefix="imgxlate-learning-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        data = make_data(root / "data", args.train_images, args.test_images, args.size, args.seed)
        reports = {m: run_method(m, root, data, args, steps) for m in methods}
    report = reports[methods[0]] if len(methods) == 1 else {"methods": reports}
    base_ips = reports.get("cyclegan", {}).get("images_per_s")
    for method, r in reports.items():
        speed = f", {r['images_per_s'] / base_ips:.2f}x CycleGAN" if base_ips and method != "cyclegan" else ""
        print(
            f"{method}: {r['steps']} steps in {r['wall_s']} s ({r['images_per_s']} images/s{speed}; "
            f"{r['cpu_s_per_image']} CPU s per image)"
        )
        print(
            f"  {'direction':<10}{'model':>10}{'identity':>10}{'mean img':>10}{'margin':>10}   (PSNR dB vs true T)"
        )
        for d, row in r["psnr_db"].items():
            margin = row["model"] - row["mean_image"]
            print(
                f"  {d:<10}{row['model']:>10.2f}{row['identity']:>10.2f}{row['mean_image']:>10.2f}{margin:>+10.2f}"
            )
    if args.json:
        with atomic_path(args.json) as tmp_json:
            tmp_json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
