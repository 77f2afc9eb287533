import json

import pytest

from metaae_edge.errors import SpecError
from metaae_edge.spec import ArchSpec, LayerSpec, SupernetConfig


def make_spec(**kw):
    base = dict(
        input_shape=(30,),
        encoder=(LayerSpec(64, "relu"), LayerSpec(32, "tanh")),
        latent_dim=4,
        decoder=(LayerSpec(32, "hardswish"),),
    )
    base.update(kw)
    return ArchSpec(**base).validate()


def test_json_round_trip_is_identity():
    spec = make_spec()
    again = ArchSpec.from_json(spec.to_json())
    assert again == spec
    assert hash(again) == hash(spec)
    assert json.loads(spec.to_json())["encoder"][1] == {"width": 32, "activation": "tanh"}


def test_param_and_mac_counts_by_hand():
    spec = make_spec()
    # encoder 30->64->32->4, decoder 4->32->30
    macs = 30 * 64 + 64 * 32 + 32 * 4 + 4 * 32 + 32 * 30
    biases = 64 + 32 + 4 + 32 + 30
    assert spec.macs() == macs
    assert spec.param_count() == macs + biases
    assert spec.describe() == "mlp 30 -> 64 relu -> 32 tanh -> [4] -> 32 hardswish -> 30"


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(latent_dim=0), "latent_dim must be a positive integer"),
        (dict(encoder=(LayerSpec(8, "gelu"),)), "encoder[0].activation must be one of"),
        (dict(input_shape=(8, 8)), "needs a 1-D input_shape"),
        (dict(output_activation="softmax"), "output_activation must be one of"),
        (dict(backbone="transformer"), "backbone must be one of"),
    ],
)
def test_validate_names_the_bad_field(kw, msg):
    with pytest.raises(SpecError) as exc:
        make_spec(**kw)
    assert msg in str(exc.value)


def test_from_json_rejects_garbage_and_unknown_fields():
    with pytest.raises(SpecError, match="not valid JSON"):
        ArchSpec.from_json("{nope")
    d = make_spec().to_dict()
    d["colour"] = "blue"
    with pytest.raises(SpecError, match="unknown ArchSpec field"):
        ArchSpec.from_dict(d)
    d = make_spec().to_dict()
    del d["latent_dim"]
    with pytest.raises(SpecError, match="missing field"):
        ArchSpec.from_dict(d)


def test_supernet_config_validates_and_round_trips():
    cfg = SupernetConfig()
    assert SupernetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(SpecError, match="strictly increasing"):
        SupernetConfig(width_choices=(32, 16)).validate()
    with pytest.raises(SpecError, match="unknown activation"):
        SupernetConfig(activations=("relu", "swish")).validate()


def test_linear_bypass_round_trips_and_old_specs_load_unchanged():
    old = make_spec()
    d = old.to_dict()
    assert "linear_bypass" not in d  # manifests written without the bypass are unchanged
    assert ArchSpec.from_dict(d) == old and not ArchSpec.from_dict(d).linear_bypass
    on = make_spec(linear_bypass=True)
    assert on.to_dict()["linear_bypass"] is True
    assert ArchSpec.from_json(on.to_json()) == on
    # two bias-free D x L maps: 2 * 30 * 4 params and MACs on top of the MLP's
    assert on.param_count() == old.param_count() + 2 * 30 * 4
    assert on.macs() == old.macs() + 2 * 30 * 4
    assert on.describe().endswith("(+ linear bypass)")
    with pytest.raises(SpecError, match="linear_bypass must be true or false"):
        make_spec(linear_bypass="yes")
    with pytest.raises(SpecError, match="a conv linear_bypass needs a dense code"):
        ArchSpec(input_shape=(1, 8, 8), encoder=(LayerSpec(8, "relu", 3),), latent_dim=2,
                 decoder=(LayerSpec(8, "relu", 3),), backbone="conv",
                 linear_bypass=True).validate()


def test_supernet_config_linear_bypass_round_trip():
    cfg = SupernetConfig()
    assert "linear_bypass" not in cfg.to_dict()  # old checkpoints / cache keys unchanged
    on = SupernetConfig(linear_bypass=True)
    assert on.to_dict()["linear_bypass"] is True
    assert SupernetConfig.from_dict(on.to_dict()) == on
    assert SupernetConfig.from_dict(cfg.to_dict()).linear_bypass is False
    with pytest.raises(SpecError, match="a conv linear_bypass needs dense_latents"):
        SupernetConfig.conv(linear_bypass=True)


# ------------------------------------------- the per-backbone table (metaae_edge.backbones)


def test_backbone_table_refuses_conv_only_options_with_the_old_messages():
    from metaae_edge.backbones import BACKBONES, rules_for

    assert BACKBONES == ("mlp", "conv", "denoiser")
    with pytest.raises(SpecError,
                       match=r"^prefilters are only defined for the conv / denoiser backbone$"):
        SupernetConfig(prefilters=("median3",)).validate()
    with pytest.raises(SpecError, match=r"^dense_latents are only defined for the conv backbone$"):
        SupernetConfig(dense_latents=(8,)).validate()
    # an MLP bypass needs nothing; the option error comes first only on the conv side
    assert SupernetConfig(linear_bypass=True).validate().linear_bypass
    with pytest.raises(SpecError, match=r"^a conv linear_bypass needs dense_latents \("):
        SupernetConfig.conv(linear_bypass=True, prefilters=())
    assert SupernetConfig.conv(linear_bypass=True, dense_latents=(8,)).dense_latents == (8,)
    for bad in ("rnn", ["mlp"]):
        with pytest.raises(SpecError, match=r"^backbone must be one of mlp, conv, denoiser, got "):
            SupernetConfig(backbone=bad).validate()
        with pytest.raises(SpecError, match=r"^backbone must be one of mlp, conv, denoiser, got "):
            rules_for(bad)


def test_layer_kernel_rule_per_backbone():
    with pytest.raises(SpecError, match=r"^enc\.kernel must be unset for an mlp layer, got 3$"):
        LayerSpec(8, "relu", 3).validate("enc")
    with pytest.raises(SpecError,
                       match=r"^enc\.kernel must be one of \(1, 3, 5, 7\) for a conv stage"):
        LayerSpec(8, "relu", None).validate("enc", "conv")
    LayerSpec(8, "relu", 5).validate("enc", "conv")
    LayerSpec(8, "relu", 4).validate("enc", "unknown")  # the spec refuses the backbone itself


def test_a_new_backbone_is_one_table_entry(monkeypatch):
    from metaae_edge import backbones

    toy = backbones.BackboneRules(lambda kernel, where: None, frozenset({"dense_latents"}))
    monkeypatch.setitem(backbones.BACKBONE_RULES, "toy", toy)
    assert SupernetConfig(backbone="toy", dense_latents=(4,)).validate().dense_latents == (4,)
    with pytest.raises(SpecError,
                       match=r"^prefilters are only defined for the conv / denoiser backbone$"):
        SupernetConfig(backbone="toy", prefilters=("none",)).validate()
    with pytest.raises(SpecError, match=r"^dense_latents are only defined for the conv / toy "):
        SupernetConfig(dense_latents=(4,)).validate()
    with pytest.raises(SpecError, match=r"one of mlp, conv, denoiser, toy, got 'x'"):
        SupernetConfig(backbone="x").validate()


def test_optional_arch_fields_are_omitted_at_their_defaults_only():
    conv = dict(input_shape=(1, 8, 8), encoder=(LayerSpec(8, "relu", 3),), latent_dim=2,
                decoder=(LayerSpec(8, "relu", 3),), backbone="conv")
    plain = ArchSpec(**conv).validate().to_dict()
    assert not {"linear_bypass", "prefilter", "dense_latent"} & set(plain)
    full = ArchSpec(**conv, prefilter="median3", dense_latent=8, linear_bypass=True).validate()
    d = full.to_dict()
    assert (d["prefilter"], d["dense_latent"], d["linear_bypass"]) == ("median3", 8, True)
    assert list(d)[-3:] == ["linear_bypass", "prefilter", "dense_latent"]  # field order
    assert ArchSpec.from_json(full.to_json()) == full
    with pytest.raises(SpecError, match=r"^dense_latent must be an integer >= 0, got True$"):
        ArchSpec(**conv, dense_latent=True).validate()
