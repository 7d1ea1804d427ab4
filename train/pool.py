"""The image pool of past fakes (Shrivastava et al. 2017), as in the CycleGAN reference.

Discriminators are updated with a mix of the newest fakes and up to ``size`` older ones, which damps
oscillation. The pool has its own seeded RNG, so its state (images + RNG) can be checkpointed and a
resumed run draws exactly what the uninterrupted run would have drawn.
"""

from __future__ import annotations

import random
from typing import Any

import torch


class ImagePool:
    def __init__(self, size: int = 50, seed: int = 0) -> None:
        self.size = int(size)
        self.rng = random.Random(seed)
        self.images: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.images)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Return a batch the same shape as ``images`` (N, C, H, W), detached.

        While the pool is filling, each image is stored and returned. Once full, each image is, with
        probability 1/2, swapped with a random stored one (the stored one is returned), else returned.
        """
        images = images.detach()
        if self.size == 0:
            return images
        out = []
        for image in images:
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif self.rng.uniform(0, 1) > 0.5:
                k = self.rng.randint(0, self.size - 1)
                old = self.images[k].clone()
                self.images[k] = image.clone()
                out.append(old.to(image.device, image.dtype))
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict[str, Any]:
        stacked = torch.cat(self.images, 0).cpu() if self.images else torch.empty(0)
        return {"size": self.size, "rng": self.rng.getstate(), "images": stacked}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        self.size = int(state["size"])
        self.rng.setstate(_as_rng_state(state["rng"]))
        images = state["images"]
        self.images = [images[i : i + 1].to(device) for i in range(images.shape[0])] if images.numel() else []


def _as_rng_state(state: Any) -> tuple:
    # random.Random states are (version, tuple_of_ints, gauss_next); a round trip through torch.load
    # may turn inner tuples into lists.
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
