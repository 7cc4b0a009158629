import pytest

import restransfer as rt
from restransfer.diagnostics.complexity import stage_table


@pytest.mark.parametrize("name,giga_macs", [("resnet50", 4.09), ("resnext50_32x4d", 4.23), ("resnet18", 1.82)])
def test_multiply_adds_match_published(name, giga_macs):
    rows = stage_table(rt.create_model(name))
    assert sum(r.macs for r in rows) / 1e9 == pytest.approx(giga_macs, abs=0.01)
    assert [r.stage for r in rows] == ["conv1", "conv2", "conv3", "conv4", "conv5", "head"]


def test_hand_counted_stem():
    rows = stage_table(rt.create_model("cifar_resnet20"))
    conv1 = rows[0]
    assert conv1.output_shape == (32, 32, 16)
    assert conv1.macs == 32 * 32 * 16 * 3 * 3 * 3
    assert conv1.params == 3 * 3 * 3 * 16 + 4 * 16  # kernel, gamma, beta, moving mean and variance


def test_frozen_stages_are_marked():
    model = rt.create_model("cifar_resnet20")
    rt.freeze_stages(model, ["conv1", "conv2"])
    rows = {r.stage: r for r in stage_table(model)}
    assert not rows["conv1"].trainable and rows["conv1"].trainable_params == 0
    assert rows["conv3"].trainable and rows["conv3"].trainable_params > 0


def test_grouped_spec_reproduces_resnext_and_keeps_the_budget():
    from restransfer.diagnostics.complexity import grouped_spec, totals
    from restransfer.models.resnet import build_resnet
    from restransfer.models.specs import SPECS

    assert grouped_spec("resnet50", 32, 4) == SPECS["resnext50_32x4d"]
    base_params, base_macs = totals(rt.create_model("resnet50"))
    # Xie et al. 2017, Table 2: 2x40d has about ResNet-50's parameters and FLOPs.
    params, macs = totals(build_resnet(grouped_spec("resnet50", 2, 40)))
    assert params == pytest.approx(base_params, rel=0.03)
    assert macs == pytest.approx(base_macs, rel=0.03)


def test_width_per_group_one_is_depthwise_in_conv2():
    from restransfer.diagnostics.complexity import grouped_spec
    from restransfer.models.resnet import build_resnet

    model = build_resnet(grouped_spec("resnet50", 64, 1), input_shape=(32, 32, 3))
    conv = model.get_layer("conv2_block1_2_conv")
    assert conv.groups == 64 and conv.filters == 64 and conv.kernel.shape == (3, 3, 1, 64)


def test_grouped_spec_refuses_basic_blocks():
    from restransfer.diagnostics.complexity import grouped_spec
    from restransfer.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a bottleneck network"):
        grouped_spec("resnet18", 2, 32)
