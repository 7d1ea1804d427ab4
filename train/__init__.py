"""imgxlate.train: CycleGAN training and ONNX export (needs the ``train`` extra: torch, onnx).

This folder is installed as ``imgxlate.train``; always import it under that name.
"""

from imgxlate.train.config import TrainConfig
from imgxlate.train.networks import NLayerDiscriminator, ResnetGenerator, build_generator, init_weights

__all__ = ["TrainConfig", "ResnetGenerator", "NLayerDiscriminator", "build_generator", "init_weights"]
