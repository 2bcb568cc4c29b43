"""The edge zoo: every builder (tests/zoo_names.py) built on MNIST- and CIFAR-sized images, its parameters and
MACs counted, its ONNX and fp32 TFLite files run in onnxruntime and LiteRT against PyTorch; the
inverted-residual families against their papers' figures; the MobileNet rounding and stem rules."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from edgekd.train.models import MODELS, build, count_macs, count_parameters  # noqa: E402
from edgekd.train.models.layers import InvertedResidual, make_divisible, stem_stride  # noqa: E402

from zoo_names import BUILDERS  # noqa: E402

SHAPES = {"mnist": (1, 28, 28), "cifar": (3, 32, 32)}
EXPORT_SHAPE = (1, 28, 28)   # odd sizes on the way down (28 → 14 → 7 → 4): the converters' padding arithmetic


def _calibrated(name: str, shape: tuple[int, ...], classes: int = 10) -> nn.Module:
    """The model with BatchNorm statistics of one random batch: freshly built, its eval-mode
    activations shrink block by block to ~1e-10 logits, where any parity check would pass."""
    torch.manual_seed(0)
    model = build(name, shape, classes)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = None          # cumulative: the statistics of exactly this batch
            module.reset_running_stats()
    with torch.no_grad():
        model.train()(torch.randn(16, *shape))
    return model.eval()


@pytest.mark.parametrize("shape_name", SHAPES)
@pytest.mark.parametrize("name", BUILDERS)
def test_every_builder_builds_forwards_and_counts(name, shape_name):
    """On the meta device (shapes, no arithmetic: a CPU forward of a fresh model costs seconds here);
    test_models runs every builder on real 8×8 tensors, the export test below at 28×28."""
    shape = SHAPES[shape_name]
    with torch.device("meta"):
        model = build(name, shape, 10).eval()
        assert model(torch.zeros(2, *shape)).shape == (2, 10)
        assert count_parameters(model) > 0 and count_macs(model, shape) > 0


# --- export: one model per kind of graph -----------------------------------------------------------

EXPORTED_ELSEWHERE = {"mlp", "cnn"}      # test_export.py exports them in every format at three and four shapes


def layer_kinds(model: nn.Module) -> frozenset:
    """What a converter sees of a model, apart from sizes: each module's type with its kernel, stride,
    padding, depthwise/grouped flag and residual connection. Variants that differ only in width, depth
    or class count (mobilenetv2_050 and mobilenetv2_100, efficientnet_lite0 and lite2) share it."""
    kinds = set()
    for module in model.modules():
        grouped = getattr(module, "groups", 1) > 1
        kinds.add((type(module).__name__, str(getattr(module, "kernel_size", "")), str(getattr(module, "stride", "")),
                   str(getattr(module, "padding", "")), grouped, getattr(module, "residual", None)))
    return frozenset(kinds)


def export_groups() -> dict[str, list[str]]:
    """Registered names grouped by ``layer_kinds`` at EXPORT_SHAPE; each group is exported through its
    smallest member. Exporting one model costs 10-40 s of CPU (torch.export traces it several times),
    so exporting every name would take ~9 minutes; a new variant with a new kind of layer gets its own group."""
    groups: dict[frozenset, list[tuple[int, str]]] = {}
    for name in set(MODELS.names()) - EXPORTED_ELSEWHERE:
        with torch.device("meta"):
            model = build(name, EXPORT_SHAPE, 10)
        groups.setdefault(layer_kinds(model), []).append((count_parameters(model), name))
    return {min(members)[1]: sorted(name for _, name in members) for members in groups.values()}


GROUPS = export_groups()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(GROUPS), ids=[f"{n}({len(GROUPS[n])})" for n in sorted(GROUPS)])
def test_every_kind_of_model_exports_in_every_format(name):
    """The project's own exporters, the files run by runtimes.open_model: ONNX and fp32 TFLite within
    1e-4 of PyTorch; tflite-int8 through the exporter's strict dtype check (int8 input, output and
    every feature map: it raises otherwise) and onnx-int8 loading and running, both close to fp32."""
    pytest.importorskip("litert_torch")
    pytest.importorskip("onnxruntime")
    from edgekd.exporters.formats import FORMATS
    from edgekd.exporters.run import ExportContext
    from edgekd.exporters.source import Source
    from edgekd.device.runtimes import open_model

    model = _calibrated(name, EXPORT_SHAPE)
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (8, *EXPORT_SHAPE)).astype(np.float32)
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    assert np.abs(reference).max() > 1e-2      # logits a 1e-4 check can tell apart
    calibration = rng.normal(0, 1, (32, *EXPORT_SHAPE)).astype(np.float32)
    with tempfile.TemporaryDirectory() as work:
        source = Source("student", Path(work), {"input": {"shape": list(EXPORT_SHAPE)}}, "torch", module=model)
        context = ExportContext(Path(work), None, calibration)
        for fmt in (FORMATS.get(n) for n in FORMATS.names() if n != "tflite-fp16"):  # fp16: test_export
            path = Path(work) / fmt.filename("student")
            fmt.exporter_function()(context, source, path)
            logits = open_model(path, threads=1).logits(x)
            if fmt.precision == "fp32":
                assert np.abs(logits - reference).max() <= 1e-4, (fmt.name, name)
            else:  # random weights and inputs, deep nets near chaos: int8 noise grows layer by layer
                # (correlation with fp32 0.70-0.999 measured), so this asks for the same function, not
                # for accuracy (that is test_zoo_end_to_end's and benchmarks/int8_accuracy.py's, trained)
                correlation = np.corrcoef(logits.ravel(), reference.ravel())[0, 1]
                assert correlation >= 0.5, (fmt.name, name, correlation)


# --- the papers' figures ---------------------------------------------------------------------------

# 1000 classes at each paper's resolution. MobileNetV2: Table 4; MobileNetV3: Tables 3 and 4 (Large 1.0
# 219M MACs: 216.6M counted, 1 %); EfficientNet-Lite: TF's efficientnet/lite README (4.7M/407M, 5.4M/631M,
# 6.1M/899M). TF's MAdds run 4.4-5.4 % above this count of convolution and Linear multiply-accumulates
# (385.2M, 600.2M, 859.7M, which the PyTorch port d-li14/efficientnet-lite.pytorch also reports, as its
# parameters 4.652M, 5.417M, 6.092M); TF does not say what else it counts, so its MACs are held at 6 %.
PAPER = [
    ("mobilenetv2_100", 224, 3.5e6, 300e6, 0.05),
    ("mobilenetv3_small_100", 224, 2.5e6, 56e6, 0.05),
    ("mobilenetv3_large_100", 224, 5.4e6, 219e6, 0.05),
    ("efficientnet_lite0", 224, 4.7e6, 407e6, 0.06),
    ("efficientnet_lite1", 240, 5.4e6, 631e6, 0.06),
    ("efficientnet_lite2", 260, 6.1e6, 899e6, 0.06),
]


@pytest.mark.parametrize("name,size,parameters,macs,mac_tolerance", PAPER, ids=[row[0] for row in PAPER])
def test_paper_parameters_and_macs(name, size, parameters, macs, mac_tolerance):
    shape = (3, size, size)
    with torch.device("meta"):          # shapes only: FlopCounterMode counts on the meta device too
        model = build(name, shape, 1000)
        counted_macs = count_macs(model, shape)
    assert abs(count_parameters(model) / parameters - 1) <= 0.05
    assert abs(counted_macs / macs - 1) <= mac_tolerance


@pytest.mark.parametrize("name", ["mobilenetv2", "mobilenetv3:variant=small", "efficientnet_lite:variant=lite2"])
def test_parameters_do_not_depend_on_the_image_size_only_the_classifier_on_the_classes(name):
    with torch.device("meta"):
        small, large = build(name, (3, 32, 32), 10), build(name, (3, 224, 224), 1000)
    assert count_parameters(large) - count_parameters(small) == 990 * (small.num_features + 1)


@pytest.mark.parametrize("value,rounded", [(32, 32), (16 * 0.5, 8), (24 * 0.35, 8), (32 * 0.35, 16), (96 * 0.75, 72),
                                           (20, 24), (12, 16), (60, 64), (1280 * 1.4, 1792), (3, 8), (83, 80)])
def test_make_divisible_is_the_mobilenet_rounding(value, rounded):
    # nearest multiple of 8, at least 8, never 10 % below: 11.2 → 8 would be 29 % below, so 16;
    # 83 → 80 is 3.6 % below and stays
    assert make_divisible(value) == rounded


def test_images_under_64_px_keep_their_size_in_the_stem():
    assert [stem_stride(s, s) for s in (8, 28, 32, 63, 64, 224)] == [1, 1, 1, 1, 2, 2]
    assert stem_stride(32, 300) == 1        # the shorter side decides
    for name in ("mobilenetv2", "mobilenetv3", "efficientnet_lite"):
        for shape, size in (((1, 8, 8), 8), ((1, 28, 28), 28), ((3, 64, 64), 32)):
            with torch.device("meta"):
                stem = build(name, shape, 10).stem
                assert stem(torch.zeros(1, *shape)).shape[-2:] == (size, size), (name, shape)


def test_residual_only_where_the_block_keeps_its_shape():
    assert InvertedResidual(16, 16, stride=1).residual
    assert not InvertedResidual(16, 16, stride=2).residual and not InvertedResidual(16, 24).residual
    block = InvertedResidual(8, 8, expand=1)        # no expansion conv: depthwise → projection
    assert [type(m).__name__ for m in block.block] == ["ConvBNAct", "ConvBNAct"]
    x = torch.randn(2, 8, 5, 5)
    assert torch.allclose(block(x), x + block.block(x))


def test_squeeze_excite_and_hard_swish_where_the_paper_puts_them():
    model = build("mobilenetv3:variant=small", (3, 32, 32), 10)
    blocks = list(model.blocks)
    with_se = [i for i, b in enumerate(blocks) if any(type(m).__name__ == "SqueezeExcite" for m in b.modules())]
    assert with_se == [0, 3, 4, 5, 6, 7, 8, 9, 10]                            # Table 2's SE column
    assert not any(isinstance(m, nn.Hardswish) for m in blocks[1].modules())  # RE rows use ReLU
    assert any(isinstance(m, nn.Hardsigmoid) for m in blocks[0].modules())
    lite = build("efficientnet_lite2", (3, 32, 32), 10)
    assert not any(type(m).__name__ == "SqueezeExcite" or isinstance(m, (nn.Hardswish, nn.ReLU))
                   for m in lite.modules())
    assert lite.stem[0].out_channels == 32 and lite.head[0].out_channels == 1280       # not scaled
    assert len(lite.blocks) == 1 + 3 + 3 + 4 + 4 + 5 + 1                     # ceil(1.2 × B0's repeats)


def test_forward_is_forward_head_of_forward_features_with_no_adaptive_pooling():
    for name in ("mobilenetv2_050", "mobilenetv3_small_100"):     # without and with V3's hidden Linear
        model = build(name, (1, 28, 28), 10).eval()
        x = torch.randn(2, 1, 28, 28)
        features = model.forward_features(x)
        assert features.shape[:2] == (2, model.head[0].out_channels)
        assert torch.equal(model(x), model.forward_head(features))
        assert model.forward_head(features, pre_logits=True).shape == (2, model.num_features)
        assert not any(isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) for m in model.modules())


@pytest.mark.parametrize("name", BUILDERS)
def test_every_builder_is_forward_head_of_forward_features(name):
    """What a feature loss (--loss fitnet) reads of every zoo family: the same logits, split in two."""
    model = build(name, (3, 32, 32), 10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model.forward_head(model.forward_features(x)))
