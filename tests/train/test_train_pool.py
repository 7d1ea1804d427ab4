import torch

from imgxlate.train.pool import ImagePool


def _batch(value: float, n: int = 1) -> torch.Tensor:
    return torch.full((n, 3, 4, 4), value)


def test_pool_fills_then_swaps_half_the_time() -> None:
    pool = ImagePool(size=4, seed=0)
    for v in range(4):  # filling: every image is stored and returned unchanged
        assert torch.equal(pool.query(_batch(float(v))), _batch(float(v)))
    assert len(pool) == 4
    swapped = 0
    for v in range(100, 500):
        out = pool.query(_batch(float(v)))
        assert out.shape == (1, 3, 4, 4)
        if out[0, 0, 0, 0].item() != v:
            swapped += 1
            assert out[0, 0, 0, 0].item() < v  # an older fake came back
    assert len(pool) == 4
    assert 150 < swapped < 250  # ~50%


def test_pool_batch_and_zero_size() -> None:
    pool = ImagePool(size=3, seed=1)
    out = pool.query(torch.arange(5.0).view(5, 1, 1, 1).expand(5, 3, 2, 2))
    assert out.shape == (5, 3, 2, 2)
    assert torch.equal(out[:3, 0, 0, 0], torch.tensor([0.0, 1.0, 2.0]))
    empty = ImagePool(size=0)
    x = torch.randn(2, 3, 2, 2, requires_grad=True)
    y = empty.query(x)
    assert torch.equal(y, x) and not y.requires_grad


def test_pool_state_round_trip_continues_identically() -> None:
    a = ImagePool(size=5, seed=3)
    for v in range(20):
        a.query(_batch(float(v)))
    b = ImagePool(size=5, seed=99)
    b.load_state_dict(a.state_dict())
    for v in range(20, 60):
        assert torch.equal(a.query(_batch(float(v))), b.query(_batch(float(v))))
