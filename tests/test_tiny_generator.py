"""The torch-free test generator (tests/tiny_generator.py) is the trainer's ResnetGenerator."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from tiny_generator import generator_model


@pytest.mark.parametrize("down_padding", ["zeros", "reflect"])
@pytest.mark.parametrize("upsample", ["transpose", "resize"])
def test_same_function_as_the_torch_generator(upsample: str, down_padding: str) -> None:
    torch = pytest.importorskip("torch")
    import onnxruntime as ort
    from torch import nn

    from imgxlate.train.networks import ResnetGenerator

    model = generator_model(ngf=8, n_blocks=2, upsample=upsample, seed=3, down_padding=down_padding)
    weights = [numpy_helper.to_array(i) for i in model.graph.initializer if i.name.startswith("w_")]
    gen = ResnetGenerator(ngf=8, n_blocks=2, upsample=upsample, down_padding=down_padding).eval()
    convs = [m for m in gen.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert [tuple(c.weight.shape) for c in convs] == [w.shape for w in weights]
    x = np.random.default_rng(1).uniform(-1, 1, (2, 3, 24, 36)).astype(np.float32)
    with torch.no_grad():
        for conv, w in zip(convs, weights):
            conv.weight.copy_(torch.from_numpy(w.copy()))
            if conv.bias is not None:
                conv.bias.zero_()
        expected = gen(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})[0]
    assert got.shape == expected.shape and float(np.abs(got - expected).max()) < 1e-4
    assert float(expected.std()) > 0.1  # the random weights make the output depend on the input


def test_graph_is_valid_and_dynamic() -> None:
    model = generator_model()
    onnx.checker.check_model(model, full_check=True)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert sum(n.op_type == "InstanceNormalization" for n in model.graph.node) == 3 + 2 * 2 + 2
