"""CycleGAN networks: the ResNet generator and the 70x70 PatchGAN discriminator (Zhu et al. 2017).

Follows the reference PyTorch implementation (junyanz/pytorch-CycleGAN-and-pix2pix): InstanceNorm
without affine parameters or running statistics, so convolutions before a norm keep their bias.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

UPSAMPLE_MODES = ("transpose", "resize")
# Padding of the two stride-2 down-sampling convolutions. "zeros" is the reference; on even sizes a
# k3 s2 p1 convolution centres its first output on the zero padding and its last output inside the
# image, so the left/top border row and column see zeros and the right/bottom ones do not: trained
# models draw thin lines along the left/top edges. "reflect" pads with the image itself.
DOWN_PADDINGS = ("reflect", "zeros")


def _norm(channels: int) -> nn.Module:
    # affine=False, track_running_stats=False: normalise with the statistics of the image itself,
    # at training and inference alike (the reference "instance" norm).
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """x + (pad, conv3x3, IN, ReLU, pad, conv3x3, IN)(x); shapes preserved."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=True),
            _norm(dim),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=True),
            _norm(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """ResNet generator: (N, 3, H, W) in [-1, 1] -> (N, 3, H, W) in [-1, 1]; H and W multiples of 4.

    stem 7x7 (ngf) -> 2 stride-2 convs (2ngf, 4ngf at H/4) -> n_blocks residual blocks at H/4
    -> 2 upsamplings -> 7x7 head -> tanh.

    ``upsample="transpose"`` is the reference (ConvTranspose2d, k3 s2 p1 op1). ``"resize"`` uses
    nearest-neighbour upsampling followed by a 3x3 conv, which cannot produce the checkerboard
    pattern transposed convolutions are prone to (Odena et al. 2016).

    ``down_padding="reflect"`` (the default) pads the stride-2 down-sampling convolutions by
    reflection, like every other convolution here; ``"zeros"`` is the reference (and what models
    made before the option existed use). The weights are the same shape either way.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        upsample: str = "transpose",
        down_padding: str = "reflect",
    ) -> None:
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, not {upsample!r}")
        if down_padding not in DOWN_PADDINGS:
            raise ValueError(f"down_padding must be one of {DOWN_PADDINGS}, not {down_padding!r}")
        self.config = {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "ngf": ngf,
            "n_blocks": n_blocks,
            "upsample": upsample,
            "down_padding": down_padding,
        }
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, 7, bias=True),
            _norm(ngf),
            nn.ReLU(True),
        ]
        for i in range(2):  # downsample: ngf -> 2ngf -> 4ngf, H -> H/2 -> H/4
            mult = 2**i
            layers += [
                nn.Conv2d(
                    ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, padding_mode=down_padding, bias=True
                ),
                _norm(ngf * mult * 2),
                nn.ReLU(True),
            ]
        mult = 4
        layers += [ResnetBlock(ngf * mult) for _ in range(n_blocks)]
        for i in range(2):  # upsample: 4ngf -> 2ngf -> ngf, H/4 -> H/2 -> H
            mult = 2 ** (2 - i)
            if upsample == "transpose":
                layers.append(
                    nn.ConvTranspose2d(
                        ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=True
                    )
                )
            else:
                layers += [
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.ReflectionPad2d(1),
                    nn.Conv2d(ngf * mult, ngf * mult // 2, 3, bias=True),
                ]
            layers += [_norm(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """PatchGAN: (N, 3, H, W) -> (N, 1, H', W') real/fake logits; 3 layers = 70x70 receptive field."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        self.config = {"in_channels": in_channels, "ndf": ndf, "n_layers": n_layers}
        kw, padw = 4, 1
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, kw, stride=2, padding=padw),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, kw, stride=2, padding=padw, bias=True),
                _norm(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, kw, stride=1, padding=padw, bias=True),
            _norm(ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, kw, stride=1, padding=padw),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """Reference "normal" init: conv weights ~ N(0, 0.02), biases 0 (norms here have no parameters)."""

    def init(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    net.apply(init)
    return net


def build_generator(config: dict[str, Any]) -> ResnetGenerator:
    """Rebuild a generator from the ``config`` dict a checkpoint stores.

    A config without ``down_padding`` was written before the option existed: those generators were
    trained with zero padding, and are rebuilt so.
    """
    return ResnetGenerator(**{"down_padding": "zeros", **config})
