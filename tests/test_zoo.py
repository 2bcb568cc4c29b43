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


# --- the stem options: stem_stride (auto|1|2|4) and stem_width, in every conv family --------------------

FAMILIES = ["mobilenetv2:width=0.5", "mobilenetv3:variant=small", "mobilenetv3:variant=large", "efficientnet_lite",
            "resnet:depth=8,stem=cifar", "resnet:depth=18,stem=imagenet"]


def _on_meta(spec: str, shape: tuple[int, ...], classes: int = 10) -> tuple[nn.Module, int, int]:
    """The model of ``spec`` on the meta device, its parameters and its MACs."""
    with torch.device("meta"):
        model = build(spec, shape, classes).eval()
        return model, count_parameters(model), count_macs(model, shape)


def _stem_output(model: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The map the first block gets: after the stem conv and its max-pool (an Identity where there is none)."""
    with torch.device("meta"):
        x = torch.zeros(1, *shape)
        if hasattr(model, "stem_pool"):
            return tuple(model.stem_pool(model.stem(x)).shape[1:])
        return tuple(model.maxpool(model.relu(model.bn1(model.conv1(x)))).shape[1:])


def _joined(spec: str, options: str) -> str:
    return f"{spec}{',' if ':' in spec else ':'}{options}"


@pytest.mark.parametrize("spec", FAMILIES)
def test_stem_stride_divides_the_map_the_blocks_get(spec):
    for stride, size in ((1, 28), (2, 14), (4, 7)):
        model, _, _ = _on_meta(_joined(spec, f"stem_stride={stride}"), (1, 28, 28))
        assert _stem_output(model, (1, 28, 28))[1:] == (size, size), (spec, stride)


@pytest.mark.parametrize("spec", FAMILIES)
def test_a_stem_of_stride_s_on_an_s_times_larger_image_costs_the_blocks_the_same(spec):
    """The blocks see the same map, so the MACs differ only by the stem conv's: equal at stride 2 (its
    output is the same 28×28), and at stride 4 by the conv's extra outputs before the max-pool (56² − 28²)."""
    _, parameters, macs = _on_meta(_joined(spec, "stem_stride=1"), (3, 28, 28))
    model, parameters_2, macs_2 = _on_meta(_joined(spec, "stem_stride=2"), (3, 56, 56))
    assert (parameters_2, macs_2) == (parameters, macs)
    model, _, macs_4 = _on_meta(_joined(spec, "stem_stride=4"), (3, 112, 112))
    conv = model.stem[0] if hasattr(model, "stem") else model.conv1
    assert macs_4 - macs == (56 ** 2 - 28 ** 2) * conv.weight.shape[1:].numel() * conv.out_channels


@pytest.mark.parametrize("spec,small,large", [("mobilenetv2:width=0.5", 1, 2), ("mobilenetv3:variant=small", 1, 2),
                                               ("efficientnet_lite", 1, 2), ("resnet8", 1, 4),
                                               ("resnet:depth=8,stem=cifar", 1, 1), ("resnet18:stem=imagenet", 4, 4)])
def test_stem_stride_auto_is_the_size_rule_and_the_defaults_are_unchanged(spec, small, large):
    """auto: stride 1 under 64 px, else the paper's 2; ResNet's is its stem's own (cifar 1, imagenet 4),
    and its stem=auto the size rule."""
    for shape, stride in (((1, 28, 28), small), ((3, 64, 64), large), ((3, 224, 224), large)):
        counts = [_on_meta(s, shape)[1:] for s in (spec, _joined(spec, "stem_stride=auto,stem_width=1"),
                                                  _joined(spec, f"stem_stride={stride}"))]
        assert counts.count(counts[0]) == 3, (spec, shape, counts)


def test_efficientnet_lite_width_scales_the_blocks_not_the_stem_and_head():
    """``width`` multiplies the variant's coefficient (lite2: 1.1 × 0.5), as TF's round_filters does."""
    for spec, coefficient in (("efficientnet_lite:width=0.5", 0.5), ("efficientnet_lite:variant=lite2,width=0.5", 0.55)):
        model, _, _ = _on_meta(spec, (3, 32, 32))
        outs = sorted({block.block[-1][0].out_channels for block in model.blocks})
        assert outs == sorted(make_divisible(c * coefficient) for c in (16, 24, 40, 80, 112, 192, 320)), spec
        assert model.stem[0].out_channels == 32 and model.head[0].out_channels == 1280


# parameters and MACs at 1×28×28, 10 classes, before the stem options existed: the defaults build the same models
BEFORE_STEM_OPTIONS = {"resnet8": (77_754, 9_345_920), "mobilenetv2_050": (700_202, 6_773_088),
                       "mobilenetv3_small_100": (1_527_818, 4_934_688), "mobilenetv3_large_100": (4_214_554, 18_361_688),
                       "efficientnet_lite0": (3_383_242, 28_580_288), "resnet18": (11_172_810, 455_800_832)}


@pytest.mark.parametrize("name", sorted(BEFORE_STEM_OPTIONS))
def test_default_stems_build_the_models_of_before(name):
    assert _on_meta(name, (1, 28, 28))[1:] == BEFORE_STEM_OPTIONS[name]


@pytest.mark.parametrize("spec,stem,base", [("mobilenetv2:width=0.5", "stem", 16), ("mobilenetv3:variant=small", "stem", 16),
                                            ("efficientnet_lite", "stem", 32), ("resnet8", "conv1", 16)])
def test_stem_width_multiplies_the_stem_convs_channels_and_the_first_block_takes_them(spec, stem, base):
    for stem_width, channels in ((1, base), (0.5, base // 2), (2, base * 2), (0.1, 8)):   # rounded: at least 8
        model, _, _ = _on_meta(_joined(spec, f"stem_width={stem_width}"), (3, 32, 32))
        conv = getattr(model, stem)[0] if stem == "stem" else model.conv1
        assert conv.out_channels == channels, (spec, stem_width)
        first = model.blocks[0].block[0][0] if stem == "stem" else model.layer1[0].conv1
        assert first.in_channels == channels
    if stem == "conv1":     # a stem narrower than layer1: its first block's shortcut becomes a projection
        assert isinstance(_on_meta("resnet8:stem_width=0.5", (3, 32, 32))[0].layer1[0].downsample, nn.Sequential)


# --- the small-image variants --------------------------------------------------------------------------

SMALL_IMAGE_VARIANTS = {"mobilenetv2_050_s2": "mobilenetv2:width=0.5", "mobilenetv2_035_s2": "mobilenetv2:width=0.35",
                        "mobilenetv3_small_100_s2": "mobilenetv3:variant=small",
                        "mobilenetv3_small_050_s2": "mobilenetv3:variant=small,width=0.5",
                        "efficientnet_lite0_035_s2": "efficientnet_lite:width=0.35"}


def _stride_2_inputs(model: nn.Module, shape: tuple[int, ...]) -> list[int]:
    """The smaller side of the map each stride-2 layer is given."""
    sides: list[int] = []
    hooks = [m.register_forward_hook(lambda m, args, out: sides.append(min(args[0].shape[-2:])))
             for m in model.modules() if getattr(m, "stride", None) in (2, (2, 2))]
    with torch.device("meta"):
        model(torch.zeros(1, *shape))
    for hook in hooks:
        hook.remove()
    return sides


@pytest.mark.parametrize("name", sorted(SMALL_IMAGE_VARIANTS))
def test_small_image_variants_cost_a_fraction_of_resnet8_at_28_px_and_keep_a_map(name):
    """At most 1/4 of ResNet-8's MACs at 1×28×28 (1/4.5 to 1/12), and no stride-2 layer fed a 1×1 map
    (it would see one pixel and padding): 28 → 14 → 7 → 4 → 2 → 1, a 1×1 feature map at 28 and 32 px."""
    _, _, resnet8 = _on_meta("resnet8", (1, 28, 28))
    for shape in ((1, 28, 28), (3, 32, 32)):
        model, _, macs = _on_meta(name, shape)
        assert macs * 4 <= resnet8 * shape[-1] ** 2 / 28 ** 2, (name, shape, resnet8 / macs)
        assert min(_stride_2_inputs(model, shape)) >= 2
        with torch.device("meta"):
            assert model.forward_features(torch.zeros(1, *shape)).shape[-2:] == (1, 1)


@pytest.mark.parametrize("name", sorted(SMALL_IMAGE_VARIANTS))
def test_small_image_variants_are_their_plain_network_with_a_stride_2_stem(name):
    """The same weights as the plain spec; 4× fewer MACs in the blocks at 28 px; the same model at 224 px."""
    plain = SMALL_IMAGE_VARIANTS[name]
    assert _on_meta(name, (1, 28, 28))[1:] == _on_meta(_joined(plain, "stem_stride=2"), (1, 28, 28))[1:]
    assert _on_meta(name, (1, 28, 28))[1] == _on_meta(plain, (1, 28, 28))[1]
    assert _on_meta(name, (3, 224, 224), 1000)[1:] == _on_meta(plain, (3, 224, 224), 1000)[1:]


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
