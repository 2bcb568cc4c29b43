"""The model zoo: every registered model on every input kind, and golden parameter and MAC counts."""
from __future__ import annotations

import pytest
import torch

from edgekd.errors import ModelError
from edgekd.models import MODELS, build, count_macs, count_parameters

SHAPES = {"digits": (1, 8, 8), "rgb": (3, 32, 32), "tabular": (12,)}


@pytest.mark.parametrize("shape_name", SHAPES)
@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_builds_and_counts_on_every_input(name, shape_name):
    shape = SHAPES[shape_name]
    try:
        model = build(name, shape, 7).eval()
    except ModelError as exc:               # an image model refuses tabular input, by name
        assert len(shape) == 1 and "needs image input" in exc.message
        return
    with torch.no_grad():
        assert model(torch.zeros(2, *shape)).shape == (2, 7)
    assert count_parameters(model) == sum(p.numel() for p in model.parameters()) > 0
    assert count_macs(model, shape) > 0


# By hand from the layers (outputs × inputs per output, for each Conv2d and Linear; one sample):
#   mlp:hidden=32 on 1×8×8:  Linear 64→32: 32·64 = 2,048;  Linear 32→10: 320
#   cnn:width=8,depth=2 on 1×8×8:  conv 1→8 at 8×8: 8·64·(1·9) = 4,608;  pool to 4×4;
#       conv 8→8 at 4×4: 8·16·(8·9) = 9,216;  Linear 8→10: 80
#   cnn:width=64,depth=3 on 1×8×8 (the default teacher):  conv 1→64 at 8×8: 64·64·9 = 36,864;
#       conv 64→64 at 4×4: 64·16·576 = 589,824;  conv 64→64 at 2×2: 64·4·576 = 147,456;  Linear: 640
@pytest.mark.parametrize("spec,parameters,macs", [
    ("mlp:hidden=32", 64 * 32 + 32 + 32 * 10 + 10, 2_048 + 320),
    ("cnn:width=8,depth=2", 72 + 16 + 576 + 16 + 80 + 10, 4_608 + 9_216 + 80),
    ("cnn:width=64,depth=3", 576 + 128 + 2 * (36_864 + 128) + 650, 36_864 + 589_824 + 147_456 + 640),
])
def test_golden_counts(spec, parameters, macs):
    model = build(spec, (1, 8, 8), 10)
    assert (count_parameters(model), count_macs(model, (1, 8, 8))) == (parameters, macs)
