"""The model zoo: every builder on every input kind (each alias resolving to its builder), golden
parameter and MAC counts, typed spec options, and the data's facts passed to a builder by name."""
from __future__ import annotations

from typing import Literal

import pytest
import torch
from torch import nn

from edgekd.core.errors import ModelError
from edgekd.train.models import MODELS, build, call_factory, count_macs, count_parameters, parse_spec, read_options
from edgekd.train.models.spec import parse_options

from zoo_names import ALIASES, BUILDERS

# real tensors at digits' size and tabular input; tests/test_zoo.py builds every builder at 1×28×28 and 3×32×32
# on the meta device and exports each kind of graph at 1×28×28 (a real forward of a fresh ResNet-50 at 32×32
# costs seconds on a 2-core machine: that is suite time, not coverage)
SHAPES = {"digits": (1, 8, 8), "rgb": (3, 8, 8), "tabular": (12,)}


@pytest.mark.parametrize("shape_name", SHAPES)
@pytest.mark.parametrize("name", BUILDERS)
def test_every_builder_builds_and_counts_on_every_input(name, shape_name):
    shape = SHAPES[shape_name]
    try:
        model = build(name, shape, 7).eval()
    except ModelError as exc:               # an image model refuses tabular input, by name
        assert len(shape) == 1 and "needs image input" in exc.message
        return
    with torch.no_grad():
        assert model(torch.zeros(2, *shape)).shape == (2, 7)
    assert count_parameters(model) > 0 and count_macs(model, shape) > 0


@pytest.mark.parametrize("alias,builder", sorted(ALIASES.items()))
def test_every_alias_builds_a_model_of_its_builder(alias, builder):
    """An alias is its builder with some options fixed: the same kind of model, the options left a subset."""
    with torch.device("meta"):      # which model, not its arithmetic: test_zoo builds every name on meta too
        model, plain = build(alias, (3, 32, 32), 10), build(builder, (3, 32, 32), 10)
        assert type(model) is type(plain) and model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert set(read_options(MODELS.get(alias))) < set(read_options(MODELS.get(builder)))


@pytest.mark.parametrize("name", BUILDERS)
def test_every_option_given_as_its_default_text_builds_the_default_model(name):
    """Each option's type reads its own default back from a spec, so every option can be written."""
    defaults = {key: option.default for key, option in read_options(MODELS.get(name)).items()}
    text = ",".join(f"{key}={str(value).lower()}" for key, value in defaults.items())
    assert parse_spec(f"{name}:{text}") == (name, defaults)
    with torch.device("meta"):          # the layers' names and shapes are the question, not their values
        plain, spelled = build(name, (1, 8, 8), 10), build(f"{name}:{text}", (1, 8, 8), 10)
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in spelled.state_dict().items()}


# By hand from the layers (outputs × inputs per output, for each Conv2d and Linear; one sample):
#   mlp:hidden=32 on 1×8×8:  Linear 64→32: 32·64 = 2,048;  Linear 32→10: 320
#   cnn:width=8,depth=2 on 1×8×8:  conv 1→8 at 8×8: 8·64·(1·9) = 4,608;  pool to 4×4;
#       conv 8→8 at 4×4: 8·16·(8·9) = 9,216;  Linear 8→10: 80
#   cnn:width=64,depth=3 on 1×8×8 (the default teacher):  conv 1→64 at 8×8: 64·64·9 = 36,864;
#       conv 64→64 at 4×4: 64·16·576 = 589,824;  conv 64→64 at 2×2: 64·4·576 = 147,456;  Linear: 640
# FlopCounterMode gives these same numbers: it counts matmuls and convolutions only (2 FLOPs per
# MAC; biases, BatchNorm, ReLU, pooling and the mean are not multiply-accumulates and count 0).
@pytest.mark.parametrize("spec,parameters,macs", [
    ("mlp:hidden=32", 64 * 32 + 32 + 32 * 10 + 10, 2_048 + 320),
    ("mlp:hidden=32,dropout=0.5", 64 * 32 + 32 + 32 * 10 + 10, 2_048 + 320),    # Dropout: no weights, no MACs
    ("cnn:width=8,depth=2", 72 + 16 + 576 + 16 + 80 + 10, 4_608 + 9_216 + 80),
    ("cnn:width=64,depth=3", 576 + 128 + 2 * (36_864 + 128) + 650, 36_864 + 589_824 + 147_456 + 640),
])
def test_golden_counts(spec, parameters, macs):
    model = build(spec, (1, 8, 8), 10)
    assert (count_parameters(model), count_macs(model, (1, 8, 8))) == (parameters, macs)


def test_count_parameters_counts_weights_and_biases_once():
    # Linear(3, 2): a 2×3 weight and 2 biases = 8; the same layer twice in a Sequential is one set of weights
    layer = nn.Linear(3, 2)
    assert count_parameters(layer) == count_parameters(nn.Sequential(layer, nn.ReLU(), layer)) == 8


class _LayersHooksMissed(nn.Module):
    """Layers a Conv2d/Linear hook count missed: a Conv1d, a grouped ConvTranspose2d, a bare matmul."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 3, padding=1)
        self.up = nn.ConvTranspose2d(4, 4, 2, stride=2, groups=2)
        self.weight = nn.Parameter(torch.zeros(80, 5))

    def forward(self, x):
        y = self.conv(x)                                  # (4, 10)
        y = self.up(y.reshape(-1, 4, 1, 10))              # (4, 2, 20)
        return y.flatten(1)[:, :80] @ self.weight


def test_macs_count_every_layer_that_multiplies():
    # By hand (the Conv2d/Linear hooks counted 0 of it):  Conv1d 2→4, k=3 on length 10: 4·10·(2·3) = 240;
    # ConvTranspose2d 4→4, 2×2 kernel, groups 2, on a 1×10 input: each of the 10 input positions of each of
    # the 4 input channels feeds 4/2 output channels × 4 taps: 10·4·2·4 = 320;  matmul (1×80)·(80×5): 400
    assert count_macs(_LayersHooksMissed(), (2, 10)) == 240 + 320 + 400


@pytest.mark.slow
def test_mlp_dropout_acts_in_training_only_and_leaves_the_exported_graph_alone():
    torch.manual_seed(0)
    plain = build("mlp:hidden=16", (1, 8, 8), 10)
    dropped = build("mlp:hidden=16,dropout=0.5", (1, 8, 8), 10)
    linear = [m for m in dropped.modules() if isinstance(m, nn.Linear)]
    for source, target in zip([m for m in plain.modules() if isinstance(m, nn.Linear)], linear):
        target.load_state_dict(source.state_dict())
    x = torch.randn(64, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), dropped.eval()(x))
        assert not torch.equal(plain.train()(x), dropped.train()(x))
    program = torch.onnx.export(dropped.eval(), (x[:1],), dynamo=True, external_data=False, verbose=False)
    assert [node.op_type for node in program.model_proto.graph.node] == ["Reshape", "Gemm", "Relu", "Gemm"]


def _typed(flag: bool = False, norm: Literal["bn", "gn", "none"] = "bn", scale: float = 1.0, tag: str = "a",
           groups: Literal[1, 2, 4] = 1):
    return flag, norm, scale, tag, groups


@pytest.mark.parametrize("text,expected", [
    ("flag=yes,norm=gn,scale=0.25,tag=x y", dict(flag=True, norm="gn", scale=0.25, tag="x y")),
    ("flag=0,groups=4", dict(flag=False, groups=4)),
    ("flag=TRUE,scale=-3", dict(flag=True, scale=-3.0)),
])
def test_options_are_converted_by_the_builders_annotations(text, expected):
    assert parse_options(_typed, "typed", text, f"typed:{text}") == expected


@pytest.mark.parametrize("spec,message,hint", [
    ("cnn:width=abc", "option 'width' in 'cnn:width=abc' must be an integer, got 'abc'", None),
    ("cnn:width=1.5", "option 'width' in 'cnn:width=1.5' must be an integer, got '1.5'", None),
    ("cnn:depth=0", "option 'depth' in 'cnn:depth=0' must be positive, got '0'", None),
    ("mlp:hidden=-4", "option 'hidden' in 'mlp:hidden=-4' must be positive", None),
    ("mlp:dropout=x", "option 'dropout' in 'mlp:dropout=x' must be a finite number, got 'x'", None),
    ("mlp:dropout=nan", "must be a finite number, got 'nan'", None),
    ("mlp:dropout=1", "option 'dropout' in 'mlp:dropout=1' must be in [0, 1), got '1'", None),
    ("cnn:widht=8", "unknown option of model 'cnn': 'widht'", "did you mean 'width'?"),
    ("mlp:num_classes=3", "unknown option of model 'mlp': 'num_classes'", "known: depth, dropout, hidden"),
    ("cnn:width", "model option 'width' in 'cnn:width' is not key=value", None),
    ("mobilenetv2:stem_stride=3", "option 'stem_stride' in 'mobilenetv2:stem_stride=3' must be one of auto, 1, 2, 4, "
     "got '3'", None),
    ("efficientnet_lite:stem_width=0", "option 'stem_width' in 'efficientnet_lite:stem_width=0' must be positive", None),
    ("mobilenetv3:stem_sride=2", "unknown option of model 'mobilenetv3': 'stem_sride'", "did you mean 'stem_stride'?"),
    ("mobilenetv3_small_050_s2:stem_stride=1", "unknown option of model 'mobilenetv3_small_050_s2': 'stem_stride'",
     "known: dropout"),
])
def test_bad_zoo_options_are_one_error_naming_option_type_and_value(spec, message, hint):
    with pytest.raises(ModelError) as info:
        build(spec, (1, 8, 8), 10)
    assert message in info.value.message and (hint is None or hint in info.value.hint)


@pytest.mark.parametrize("text,message,hint", [
    ("flag=maybe", "option 'flag' in 'typed:flag=maybe' must be true or false (1/0, yes/no), got 'maybe'", None),
    ("norm=bm", "option 'norm' in 'typed:norm=bm' must be one of bn, gn, none, got 'bm'", "did you mean 'bn'?"),
    ("groups=3", "option 'groups' in 'typed:groups=3' must be one of 1, 2, 4, got '3'", None),
    ("scale=inf", "option 'scale' in 'typed:scale=inf' must be a finite number", None),
])
def test_bool_and_choice_options_refuse_other_words(text, message, hint):
    with pytest.raises(ModelError) as info:
        parse_options(_typed, "typed", text, f"typed:{text}")
    assert message in info.value.message and (hint is None or hint in (info.value.hint or ""))


def test_an_option_without_default_is_required_and_an_unsupported_type_is_refused():
    def needs(num_classes, size: int):
        return size

    def odd(size: bytes = b""):
        return size

    with pytest.raises(ModelError, match="model 'needs' needs option 'size'"):
        parse_options(needs, "needs", "", "needs")
    assert parse_options(needs, "needs", "size=3", "needs:size=3") == {"size": 3}
    with pytest.raises(ModelError, match="option 'size' of '.*odd' is annotated"):
        read_options(odd)


def test_call_factory_passes_only_the_facts_a_factory_declares():
    def bare(width: int = 2):
        return {"width": width}

    def classes_only(num_classes, width: int = 2):
        return {"num_classes": num_classes, "width": width}

    def everything(input_shape, num_classes, *, in_chans, width: int = 2):
        return {"input_shape": input_shape, "num_classes": num_classes, "in_chans": in_chans, "width": width}

    assert call_factory(bare, (3, 32, 32), 10, {"width": 5}) == {"width": 5}
    assert call_factory(classes_only, [12], 4, {}) == {"num_classes": 4, "width": 2}
    assert call_factory(everything, [3, 32, 32], 10, {}) == {"input_shape": (3, 32, 32), "num_classes": 10,
                                                             "in_chans": 3, "width": 2}
    assert read_options(everything) == read_options(bare)       # facts are not options
    with pytest.raises(ModelError, match="model 'everything' needs image input"):
        call_factory(everything, (12,), 10, {})
