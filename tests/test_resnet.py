"""The resnet family against the paper's counts, its stem and width rules, torchvision's
state-dict names, and its bad options. Building and exporting every variant is test_zoo's."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from edgekd.core.errors import ModelError
from edgekd.train.models import MODELS, build, call_factory, count_macs, count_parameters, parse_spec

IMAGENET = (3, 224, 224)


def on_meta(spec: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The model of ``spec`` with shapes only: ResNet-50's 25M weights cost no memory or time."""
    name, options = parse_spec(spec)
    with torch.device("meta"):
        return call_factory(MODELS.get(name), input_shape, num_classes, options)


# He et al. 2016, Table 3 (parameters, as torchvision counts them) and Table 1 (FLOPs, which the
# paper counts as multiply-adds); ResNet-50's 4.1 G is the stride-on-3×3 form the module documents.
@pytest.mark.parametrize("spec,parameters,macs", [
    ("resnet18:stem=imagenet", 11.7e6, 1.8e9),
    ("resnet34:stem=imagenet", 21.8e6, 3.6e9),
    ("resnet50:stem=imagenet", 25.6e6, 4.1e9),
    ("resnet:depth=50", 25.6e6, 4.1e9),          # stem=auto at 224 px is the imagenet stem
])
def test_imagenet_depths_match_the_paper(spec, parameters, macs):
    model = on_meta(spec, IMAGENET, 1000)
    assert count_parameters(model) == pytest.approx(parameters, rel=0.05)
    assert count_macs(model, IMAGENET) == pytest.approx(macs, rel=0.05)


# CIFAR depths, 10 classes, by hand (k×k×in×out per convolution, 2 per BatchNorm channel):
#   stem 3×3 3→16 + BN: 432 + 32;  stage 16: n × (2·2,304 + 64);
#   stage 32: first block 4,608 + 9,216 + 128 + projection 512 + 64, then (n-1) × (2·9,216 + 128);
#   stage 64: first block 18,432 + 36,864 + 256 + projection 2,048 + 128, then (n-1) × (2·36,864 + 256);
#   Linear 64→10: 650.   Total 97,216·n − 19,174.
@pytest.mark.parametrize("depth", [8, 14, 20])
def test_cifar_depths_match_the_formula(depth):
    n = (depth - 2) // 6
    model = on_meta(f"resnet{depth}", (3, 32, 32), 10)
    assert count_parameters(model) == 97_216 * n - 19_174
    assert count_parameters(on_meta(f"resnet:depth={depth}", (3, 32, 32), 10)) == 97_216 * n - 19_174


def test_resnet20_matches_the_papers_table_6():
    assert count_parameters(on_meta("resnet20", (3, 32, 32), 10)) == pytest.approx(0.27e6, rel=0.05)


def _stem(model: nn.Module) -> tuple[int, int, bool]:
    return model.conv1.kernel_size[0], model.conv1.stride[0], isinstance(model.maxpool, nn.MaxPool2d)


CIFAR_STEM, IMAGENET_STEM = (3, 1, False), (7, 2, True)


@pytest.mark.parametrize("spec,shape,stem", [
    ("resnet8", (3, 32, 32), CIFAR_STEM),
    ("resnet8", (1, 63, 63), CIFAR_STEM),
    ("resnet8", (3, 48, 96), CIFAR_STEM),            # the smaller side decides
    ("resnet8", (3, 64, 64), IMAGENET_STEM),
    ("resnet18", (3, 224, 224), IMAGENET_STEM),
    ("resnet18:stem=cifar", (3, 224, 224), CIFAR_STEM),
    ("resnet18:stem=imagenet", (1, 28, 28), IMAGENET_STEM),
])
def test_auto_stem_keeps_full_resolution_under_64_px(spec, shape, stem):
    model = on_meta(spec, shape, 10)
    assert _stem(model) == stem and model.conv1.in_channels == shape[0]


@pytest.mark.parametrize("spec,shape,stem", [
    ("resnet8:stem_stride=2", (3, 32, 32), (3, 2, False)),
    ("resnet8:stem_stride=4", (1, 28, 28), (3, 2, True)),          # the cifar kernel, then the max-pool
    ("resnet18:stem_stride=2", (3, 224, 224), (7, 2, False)),      # the imagenet kernel without its max-pool
    ("resnet18:stem_stride=1", (3, 224, 224), (7, 1, False)),
    ("resnet18:stem_stride=4", (3, 224, 224), IMAGENET_STEM),
    ("resnet8:stem_stride=auto", (3, 224, 224), IMAGENET_STEM),
])
def test_stem_stride_keeps_the_stems_kernel_and_sets_its_stride(spec, shape, stem):
    assert _stem(on_meta(spec, shape, 10)) == stem


def _stage_channels(model: nn.Module) -> list[int]:
    return [getattr(model, name)[-1].bn2.num_features for name in model.stage_names]


@pytest.mark.parametrize("width,expected", [
    (1.0, [16, 32, 64]),
    (0.5, [8, 16, 32]),
    (0.25, [8, 8, 16]),          # 4 → at least 8
    (0.3, [8, 16, 24]),          # 4.8 → 8; 9.6 and 19.2 round to 8 and 16, over 10 % short: + 8
    (0.75, [16, 24, 48]),        # 12 is half-way: rounded up
    (1.25, [24, 40, 80]),        # 20 is half-way: rounded up, not to the even 16
    (2.0, [32, 64, 128]),
])
def test_width_scales_channels_to_multiples_of_8_at_most_10_percent_short(width, expected):
    model = on_meta(f"resnet20:width={width}", (3, 32, 32), 10)
    assert _stage_channels(model) == expected and model.conv1.out_channels == expected[0]
    assert model.fc.in_features == expected[-1]


def test_width_scales_the_bottleneck_before_its_expansion():
    model = on_meta("resnet50:width=0.5", IMAGENET, 1000)
    assert _stage_channels(model) == [32, 64, 128, 256]
    assert model.layer4[-1].conv3.out_channels == model.fc.in_features == 1024


# torchvision's resnet18/50 state dicts (keys, some shapes), so their weights load as --teacher-weights
@pytest.mark.parametrize("name,keys,shapes", [
    ("resnet18", 122, {"conv1.weight": (64, 3, 7, 7), "layer2.0.downsample.0.weight": (128, 64, 1, 1),
                       "layer2.0.downsample.1.running_var": (128,), "layer4.1.bn2.weight": (512,),
                       "fc.weight": (1000, 512)}),
    ("resnet50", 320, {"layer1.0.conv3.weight": (256, 64, 1, 1), "layer1.0.downsample.0.weight": (256, 64, 1, 1),
                       "layer3.5.conv2.weight": (256, 256, 3, 3), "layer4.2.bn3.bias": (2048,),
                       "fc.weight": (1000, 2048)}),
])
def test_state_dict_names_are_torchvisions(name, keys, shapes):
    state = on_meta(name, IMAGENET, 1000).state_dict()
    assert len(state) == keys
    assert {key: tuple(state[key].shape) for key in shapes} == shapes


def test_forward_is_head_of_features_and_features_keep_their_map():
    torch.manual_seed(0)
    model = build("resnet8", (3, 32, 32), 10).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, 64, 8, 8)
        assert torch.equal(model(x), model.fc(features.mean(dim=(2, 3))))
    assert not any(isinstance(m, nn.AdaptiveAvgPool2d) for m in model.modules())
    bottleneck = on_meta("resnet50", (3, 64, 64), 10)      # imagenet stem: /4, then three stages of /2
    assert bottleneck.forward_features(torch.zeros(1, 3, 64, 64, device="meta")).shape == (1, 2048, 2, 2)


@pytest.mark.parametrize("spec,message,hint", [
    ("resnet:depth=19", "option 'depth' in 'resnet:depth=19' must be one of 8, 14, 20, 18, 34, 50, got '19'",
     None),
    ("resnet:depth=18.0", "option 'depth' in 'resnet:depth=18.0' must be one of", None),
    ("resnet18:width=0", "option 'width' in 'resnet18:width=0' must be positive, got '0'", None),
    ("resnet:width=-0.5", "option 'width' in 'resnet:width=-0.5' must be positive", None),
    ("resnet:width=wide", "option 'width' in 'resnet:width=wide' must be a finite number", None),
    ("resnet:stem=cifr", "option 'stem' in 'resnet:stem=cifr' must be one of auto, cifar, imagenet",
     "did you mean 'cifar'?"),
    ("resnet18:depth=34", "unknown option of model 'resnet18': 'depth'", "known: stem, stem_stride, stem_width, width"),
    ("resnet8:stem_stride=3", "option 'stem_stride' in 'resnet8:stem_stride=3' must be one of auto, 1, 2, 4, got '3'",
     None),
    ("resnet:stem_width=0", "option 'stem_width' in 'resnet:stem_width=0' must be positive, got '0'", None),
    ("resnet19", "unknown model 'resnet19'", "did you mean 'resnet18'?"),
    ("resnet:width=1e9", "model 'resnet:width=1e9' is too large", "choose a smaller width"),
])
def test_bad_options_are_one_error_naming_the_option(spec, message, hint):
    with pytest.raises(ModelError) as info:
        build(spec, (3, 32, 32), 10)
    assert message in info.value.message and (hint is None or hint in (info.value.hint or ""))


def test_tabular_input_is_refused_by_name():
    with pytest.raises(ModelError, match="model 'resnet20' needs image input"):
        build("resnet20", (12,), 3)
