"""CUT and FastCUT: contrastive unpaired translation (Park, Efros, Zhang, Zhu, ECCV 2020).

One generator per direction, no cycle. The generator's own encoder embeds the input x and its
translation G(x); a patch of G(x) must be closer to the patch of x at the same place than to the other
patches of x (PatchNCE, an InfoNCE loss over patches):

    l(q, k+, k-) = -log( exp(q.k+ / tau) / (exp(q.k+ / tau) + sum_n exp(q.k-_n / tau)) )

with q a patch feature of G(x), k+ the feature of x at the same position and k- the features of x at
the other sampled positions of the same image. Features come from five layers of the generator's
encoder (the input pixels, the two down-sampling convolutions, the first and fifth residual blocks),
each passed through its own two-layer MLP head and L2-normalised; 256 positions are sampled per layer,
tau = 0.07. The keys k are constants (no gradient), as in the reference implementation.

- CUT: lambda_NCE 1, plus the identity term PatchNCE(G(y), y) on target-domain images, averaged with
  the main term.
- FastCUT: lambda_NCE 10, no identity term, and flip equivariance: the input is flipped at random and
  the features of G(flip(x)) are flipped back before they are compared with those of x.

Both use LSGAN with the 70x70 PatchGAN discriminator, no image pool, and Xavier-normal initialisation
with gain 0.02 (the reference defaults). Update order per step: the discriminator on the current fake,
then the generator and its heads.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from imgxlate.train.checkpoint import load_optimisation_state, optimisation_state
from imgxlate.train.config import TrainConfig
from imgxlate.train.losses import discriminator_loss, generator_gan_loss
from imgxlate.train.networks import NLayerDiscriminator, ResnetBlock, ResnetGenerator
from imgxlate.train.pool import ImagePool
from imgxlate.train.schedule import schedule_for

# ----------------------------------------------------------------------------------------------------
# the loss


def patch_nce_loss(q: torch.Tensor, k: torch.Tensor, batch_size: int, temperature: float) -> torch.Tensor:
    """Mean PatchNCE loss of queries ``q`` against keys ``k``, both (batch_size * P, D), L2-normalised.

    Row ``i`` of image ``b``: the positive is key ``i`` of the same image, the negatives are the other
    P - 1 keys of that image only (not of the other images of the batch: the CUT setting). The keys
    are detached. Computed in float32.
    """
    q = q.float()
    k = k.detach().float()
    dim = q.shape[1]
    q = q.reshape(batch_size, -1, dim)
    k = k.reshape(batch_size, -1, dim)
    patches = q.shape[1]
    # logits[b, i, j] = q_bi . k_bj / tau; the diagonal holds the positives, the rest the negatives
    logits = torch.bmm(q, k.transpose(1, 2)) / temperature
    target = torch.arange(patches, device=q.device).repeat(batch_size)
    return F.cross_entropy(logits.reshape(batch_size * patches, patches), target)


# ----------------------------------------------------------------------------------------------------
# features of the generator's encoder


def nce_layers(gen: ResnetGenerator) -> list[int]:
    """Indices into ``gen.model`` whose outputs are the PatchNCE features, as in the paper: the input
    pixels (the output of the first padding layer), the two stride-2 down-sampling convolutions, and
    the first and fifth residual blocks (the last one when there are fewer than five)."""
    modules = list(gen.model)
    layers = [0]
    layers += [i for i, m in enumerate(modules) if isinstance(m, nn.Conv2d) and m.stride == (2, 2)][:2]
    blocks = [i for i, m in enumerate(modules) if isinstance(m, ResnetBlock)]
    if blocks:
        layers += [blocks[0], blocks[min(4, len(blocks) - 1)]]
    return sorted(set(layers))


def run_generator(
    gen: ResnetGenerator, x: torch.Tensor, layers: list[int], full: bool = True
) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
    """``gen(x)`` and the outputs of ``layers``; with ``full=False`` stop after the last of them and
    return None as the image (the "encode only" pass)."""
    feats: list[torch.Tensor] = []
    last = max(layers)
    h = x
    for i, module in enumerate(gen.model):
        h = module(h)
        if i in layers:
            feats.append(h)
        if i == last and not full:
            return None, feats
    return h, feats


class PatchHeads(nn.Module):
    """One MLP (Linear, ReLU, Linear) per feature layer, then L2 normalisation (the reference netF)."""

    def __init__(self, channels: list[int], dim: int = 256) -> None:
        super().__init__()
        self.channels = list(channels)
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(c, dim), nn.ReLU(), nn.Linear(dim, dim)) for c in channels
        )

    def forward(self, feats: list[torch.Tensor], ids: list[torch.Tensor]) -> list[torch.Tensor]:
        """(N, C, H, W) features and per-layer position indices (into H*W) -> (N * P, dim) each."""
        out = []
        for feat, index, mlp in zip(feats, ids, self.mlps):
            flat = feat.permute(0, 2, 3, 1).flatten(1, 2)  # (N, H*W, C)
            x = mlp(flat[:, index, :].flatten(0, 1))
            x = x.float()
            out.append(x / (x.norm(p=2, dim=1, keepdim=True) + 1e-7))
        return out


def sample_patch_ids(
    feats: list[torch.Tensor], num_patches: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """For each layer, ``num_patches`` distinct positions (all of them when the map is smaller), drawn
    with ``generator`` on the CPU (the same draws on any device), as long tensors on the features'
    device. The same positions are used for every image of the batch, as in the reference."""
    ids = []
    for feat in feats:
        positions = feat.shape[2] * feat.shape[3]
        perm = torch.randperm(positions, generator=generator)[: min(num_patches, positions)]
        ids.append(perm.to(feat.device))
    return ids


def init_xavier(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """The CUT reference initialisation: Xavier-normal weights (gain 0.02) for convolutions and linear
    layers, zero biases."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_normal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


class ContrastiveGenerator(nn.Module):
    """A generator with its projection heads; ``forward`` does everything that needs their gradients in
    one call (so DDP sees one forward per step): translate, embed the translation, project.

    forward(real, n_src, ids_rng) -> (fake, queries, keys)

    ``real`` is (n_src + n_idt, 3, S, S): the source images, then (CUT) target-domain images for the
    identity term. ``queries``/``keys`` hold one entry per term (main, identity), each a list of
    (n * P, dim) tensors, one per layer. Keys carry no gradient.
    """

    def __init__(self, gen: ResnetGenerator, cfg: TrainConfig, sample_shape: tuple[int, int]) -> None:
        super().__init__()
        self.gen = gen
        self.layers = nce_layers(gen)
        self.num_patches = cfg.num_patches
        self.flip_equivariance = bool(cfg.flip_equivariance)
        with torch.no_grad():
            _, feats = run_generator(gen, torch.zeros(1, 3, *sample_shape), self.layers, full=False)
        self.heads = PatchHeads([f.shape[1] for f in feats], cfg.nce_dim)

    def forward(
        self, real: torch.Tensor, n_src: int, ids_rng: torch.Generator, flip: bool = False
    ) -> tuple[torch.Tensor, list[list[torch.Tensor]], list[list[torch.Tensor]]]:
        x = torch.flip(real, [3]) if flip else real
        fake, feats_x = run_generator(self.gen, x, self.layers)
        assert fake is not None
        _, feats_fake = run_generator(self.gen, fake, self.layers, full=False)
        if flip:
            # compare G(flip(x)) flipped back with x itself: keys come from the unflipped input
            feats_fake = [torch.flip(f, [3]) for f in feats_fake]
            with torch.no_grad():
                _, feats_x = run_generator(self.gen, real, self.layers, full=False)
        terms = [slice(0, n_src)] + ([slice(n_src, real.shape[0])] if real.shape[0] > n_src else [])
        queries, keys = [], []
        for part in terms:
            ids = sample_patch_ids(feats_x, self.num_patches, ids_rng)  # fresh positions per term
            with torch.no_grad():
                keys.append(self.heads([f[part].detach() for f in feats_x], ids))
            queries.append(self.heads([f[part] for f in feats_fake], ids))
        return fake, queries, keys


class _Branch:
    """One direction: source -> target generator with heads, the target-domain discriminator, a pool."""

    def __init__(self, name: str, cfg: TrainConfig, rt: Any, index: int) -> None:
        self.name = name  # "ab" or "ba"
        gen = init_xavier(ResnetGenerator(**cfg.generator_config()))
        self.model = ContrastiveGenerator(gen, cfg, (cfg.image_size, cfg.image_size))
        init_xavier(self.model.heads)
        self.disc = init_xavier(NLayerDiscriminator(**cfg.discriminator_config()))
        self.pool = ImagePool(cfg.pool_size or 0, seed=cfg.seed * 1000 + 2 * rt.rank + 1 + index)
        self.ids_rng = torch.Generator().manual_seed(cfg.seed * 1000 + 10 * rt.rank + 7 + index)
        self.flip_rng = torch.Generator().manual_seed(cfg.seed * 1000 + 10 * rt.rank + 8 + index)


class CutTrainer:
    """CUT / FastCUT for one direction, or two independent directions trained in the same steps.

    Same interface as :class:`imgxlate.train.cyclegan.CycleGANTrainer`: ``nets``, ``step``,
    ``state_dict``/``load_state_dict``, ``generators``, ``sample_rows``, ``lr``.
    """

    def __init__(self, cfg: TrainConfig, rt: Any, steps_per_epoch: int) -> None:
        self.cfg, self.rt, self.steps_per_epoch = cfg, rt, steps_per_epoch
        torch.manual_seed(cfg.seed)
        self.branches: dict[str, _Branch] = {}
        for index, direction in enumerate(cfg.directions()):
            key = "ab" if direction == "a2b" else "ba"
            self.branches[key] = _Branch(key, cfg, rt, 2 * index)
        self.nets: dict[str, nn.Module] = {}
        for key, br in self.branches.items():
            disc_key = "D_b" if key == "ab" else "D_a"  # judges the target domain
            self.nets[f"G_{key}"] = br.model.gen
            self.nets[f"F_{key}"] = br.model.heads
            self.nets[disc_key] = br.disc
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        for br in self.branches.values():
            br.model.to(rt.device, memory_format=fmt)
            br.disc.to(rt.device, memory_format=fmt)
        betas = (cfg.beta1, cfg.beta2)
        # One Adam over every generator and head (Adam is per parameter: the same as one optimizer
        # each), one over the discriminators.
        self.opt_g = torch.optim.Adam(
            [p for br in self.branches.values() for p in br.model.parameters()], lr=cfg.lr, betas=betas
        )
        self.opt_d = torch.optim.Adam(
            [p for br in self.branches.values() for p in br.disc.parameters()], lr=cfg.lr, betas=betas
        )

        factor = schedule_for(cfg, steps_per_epoch)
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, factor)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, factor)
        self.scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.precision == "fp16")

        self.call: dict[str, Any] = {}
        for key, br in self.branches.items():
            model, disc = br.model, br.disc
            if rt.distributed:
                from torch.nn.parallel import DistributedDataParallel as DDP

                ids = [rt.device.index] if rt.device.type == "cuda" else None
                model, disc = DDP(model, device_ids=ids), DDP(disc, device_ids=ids)
            frozen = br.disc  # generator step: D passes gradients only; the raw module (see CycleGAN)
            if cfg.compile:
                model, disc, frozen = torch.compile(model), torch.compile(disc), torch.compile(frozen)
            self.call[key] = {"G": model, "D": disc, "D_frozen": frozen}
        self.last_images: list[list[torch.Tensor]] = []

    # -- state ------------------------------------------------------------------------------------

    def generators(self) -> dict[str, nn.Module]:
        """The trained generators by direction (``a2b``/``b2a``), for export."""
        return {("a2b" if k == "ab" else "b2a"): br.model.gen for k, br in self.branches.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            **optimisation_state(self),
            "generator_config": next(iter(self.branches.values())).model.gen.config,
            "discriminator_config": next(iter(self.branches.values())).disc.config,
            "pools": {k: br.pool.state_dict() for k, br in self.branches.items()},
            "sampling": {
                k: {"ids": br.ids_rng.get_state(), "flip": br.flip_rng.get_state()}
                for k, br in self.branches.items()
            },
        }

    def rank_state(self) -> dict[str, Any]:
        """This rank's RNG-carrying state that differs between ranks (gathered at checkpoints)."""
        return {
            "pools": {k: br.pool.state_dict() for k, br in self.branches.items()},
            "sampling": {
                k: {"ids": br.ids_rng.get_state(), "flip": br.flip_rng.get_state()}
                for k, br in self.branches.items()
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_optimisation_state(self, state)
        mine = {"pools": state["pools"], "sampling": state["sampling"]}
        by_rank = state.get("per_rank")
        if by_rank and len(by_rank) == self.rt.world_size:
            mine = by_rank[self.rt.rank]
        for k, br in self.branches.items():
            br.pool.load_state_dict(mine["pools"][k], self.rt.device)
            br.ids_rng.set_state(mine["sampling"][k]["ids"])
            br.flip_rng.set_state(mine["sampling"][k]["flip"])

    # -- one step ---------------------------------------------------------------------------------

    def step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """One reference CUT iteration per direction: forward, update D on the current fakes, then
        update G and its heads with lambda_GAN * GAN + lambda_NCE * PatchNCE."""
        cfg, rt = self.cfg, self.rt
        n = real_a.shape[0]
        outs: dict[str, Any] = {}
        for key, br in self.branches.items():
            src, dst = (real_a, real_b) if key == "ab" else (real_b, real_a)
            real = torch.cat([src, dst], 0) if cfg.nce_idt else src
            flip = bool(cfg.flip_equivariance) and bool(torch.rand((), generator=br.flip_rng) < 0.5)
            with rt.autocast():
                fake, queries, keys = self.call[key]["G"](real, n, br.ids_rng, flip)
            outs[key] = (src, dst, fake, queries, keys)

        # discriminators: real target images against the current fakes (through the pool when set)
        for br in self.branches.values():
            for p in br.disc.parameters():
                p.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        d_losses: dict[str, torch.Tensor] = {}
        loss_d_total = torch.zeros((), device=rt.device)
        for key, br in self.branches.items():
            src, dst, fake, _, _ = outs[key]
            pooled = br.pool.query(fake[:n].detach().float()).to(dst.dtype)
            with rt.autocast():
                pred = self.call[key]["D"](torch.cat([dst, pooled], 0))
                loss_d = discriminator_loss(pred[:n], pred[n:], cfg.gan_mode)
            d_losses[key] = loss_d
            loss_d_total = loss_d_total + loss_d
        self.scaler.scale(loss_d_total).backward()
        self.scaler.step(self.opt_d)

        # generators and heads, the discriminators frozen
        for br in self.branches.values():
            for p in br.disc.parameters():
                p.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        losses: dict[str, torch.Tensor] = {}
        loss_g_total = torch.zeros((), device=rt.device)
        for key, br in self.branches.items():
            src, dst, fake, queries, keys = outs[key]
            if cfg.lambda_gan > 0:
                with rt.autocast():
                    pred = self.call[key]["D_frozen"](fake[:n])
                loss_gan = cfg.lambda_gan * generator_gan_loss(pred, cfg.gan_mode)
            else:
                loss_gan = torch.zeros((), device=rt.device)
            nce = []
            for q_layers, k_layers in zip(queries, keys):
                per_layer = [
                    patch_nce_loss(q, k, n, cfg.nce_temperature) * cfg.lambda_nce
                    for q, k in zip(q_layers, k_layers)
                ]
                nce.append(torch.stack(per_layer).mean())
            losses[f"G_{key}"] = loss_gan
            losses[f"nce_{key}"] = nce[0]
            if len(nce) > 1:
                losses[f"nce_idt_{key}"] = nce[1]
            losses[f"D_{key[1]}"] = d_losses[key]  # the target domain's discriminator
            loss_nce = torch.stack(nce).mean()  # CUT: (NCE(x) + NCE(y)) / 2
            loss_g_total = loss_g_total + loss_gan + loss_nce
        self.scaler.scale(loss_g_total).backward()
        self.scaler.step(self.opt_g)
        self.scaler.update()
        self.sched_g.step()
        self.sched_d.step()
        for br in self.branches.values():
            for p in br.disc.parameters():
                p.requires_grad_(True)

        rows = []
        for key in self.branches:
            src, dst, fake, _, _ = outs[key]
            row = [src[0], fake[0], dst[0]]
            if cfg.nce_idt:
                row.append(fake[n])  # G(y): should stay y
            rows.append([t.detach() for t in row])
        self.last_images = rows
        return {k: v.detach() for k, v in losses.items()}

    def sample_rows(self) -> list[list[torch.Tensor]]:
        return self.last_images

    @property
    def lr(self) -> float:
        return float(self.opt_g.param_groups[0]["lr"])
