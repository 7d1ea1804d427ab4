import pytest
import torch

from imgxlate.train.networks import NLayerDiscriminator, ResnetGenerator, build_generator, init_weights


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
def test_generator_keeps_shape_and_range(upsample: str) -> None:
    g = init_weights(ResnetGenerator(ngf=8, n_blocks=2, upsample=upsample), gain=0.5)
    x = torch.rand(2, 3, 32, 44) * 2 - 1
    y = g(x)
    assert y.shape == x.shape
    assert y.abs().max() <= 1.0
    # rebuilt from its config dict with the same weights -> same function
    g2 = build_generator(g.config)
    g2.load_state_dict(g.state_dict())
    torch.testing.assert_close(g2(x), y)


def test_patchgan_output_shape() -> None:
    d = NLayerDiscriminator(ndf=8, n_layers=3)
    # 3 stride-2 4x4 convs then two stride-1 4x4 convs (padding 1): 64 -> 32 -> 16 -> 8 -> 7 -> 6
    assert d(torch.zeros(1, 3, 64, 64)).shape == (1, 1, 6, 6)


def test_init_is_normal_002() -> None:
    torch.manual_seed(0)
    g = init_weights(ResnetGenerator(ngf=16, n_blocks=2))
    w = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(w.std().item() - 0.02) < 0.002
    assert all(m.bias.abs().max() == 0 for m in g.modules() if isinstance(m, torch.nn.Conv2d))
