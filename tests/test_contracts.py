"""The IO contracts: one per model kind, derived once from an ArchSpec (torch-free except
the reference-maths tests)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metaae_edge.contracts import (
    CONTRACTS,
    FixedImageContract,
    ImageContract,
    IOContract,
    VectorContract,
    contract_class,
    contract_for,
    register_contract,
)
from metaae_edge.errors import DataError, InputError, SpecError
from metaae_edge.runtime.backends import image_profile, latent_profile, trt_profile_options
from metaae_edge.spec import ArchSpec
from metaae_edge.spec import LayerSpec as L

MLP = ArchSpec((30,), (L(16, "relu"),), 4, (L(16, "tanh"),))
CONV = ArchSpec((1, 16, 24), (L(8, "relu", 3), L(8, "tanh", 3)), 2,
                (L(8, "relu", 3), L(8, "relu", 3)), backbone="conv")
DENSE = ArchSpec((1, 16, 16), (L(8, "relu", 3), L(8, "tanh", 3)), 2,
                 (L(8, "relu", 3), L(8, "relu", 3)), backbone="conv", dense_latent=8)

# The manifest input / outputs sections as exporters/bundle.py wrote them before the
# contracts (the vector code of _manifest, _conv_io and _fixed_io), for the specs above.
OLD_IO = {'mlp': [{'names': ['x'],
                   'shape': [None, 30],
                   'dtype': 'float32',
                   'units': 'raw (normalisation is inside the graphs)'},
                  {'reconstruction': {'shape': [None, 30], 'dtype': 'float32', 'units': 'raw'},
                   'latent': {'shape': [None, 4], 'dtype': 'float32'},
                   'score': {'shape': [None],
                             'dtype': 'float32',
                             'definition': 'mean((dec(enc(z)) - z)^2, axis=1), z = (x - mean) / '
                                           'std'}}],
          'conv': [{'names': ['x'],
                    'shape': [None, 1, None, None],
                    'dims': ['batch', 1, 'height', 'width'],
                    'dtype': 'float32',
                    'layout': 'NCHW',
                    'channels': 1,
                    'resolution': [16, 24],
                    'spatial_multiple': 4,
                    'units': 'raw pixels (normalisation is inside the graphs)',
                    'note': 'height and width may be any multiples of 4; the architecture was '
                            'adapted at 16x24'},
                   {'reconstruction': {'shape': [None, 1, None, None],
                                       'dtype': 'float32',
                                       'units': 'raw'},
                    'latent': {'shape': [None, 2, None, None],
                               'dims': ['batch', 2, 'latent_height', 'latent_width'],
                               'dtype': 'float32',
                               'spatial_divisor': 4,
                               'values_per_image': 48,
                               'at_resolution': [16, 24]},
                    'score': {'shape': [None],
                              'dtype': 'float32',
                              'definition': 'mean((dec(enc(z)) - z)^2, axis=(1, 2, 3)), z = (x - '
                                            'mean) / std'},
                    'error_map': {'shape': [None, 1, None, None],
                                  'dtype': 'float32',
                                  'definition': 'mean((dec(enc(z)) - z)^2, axis=1, keepdims), z = '
                                                '(x - mean) / std'}}],
          'dense': [{'names': ['x'],
                     'shape': [None, 1, 16, 16],
                     'dims': ['batch', 1, 16, 16],
                     'dtype': 'float32',
                     'layout': 'NCHW',
                     'channels': 1,
                     'resolution': [16, 16],
                     'spatial_multiple': 4,
                     'fixed_hw': [16, 16],
                     'units': 'raw pixels (normalisation is inside the graphs)',
                     'note': 'height and width must be exactly 16x16: the dense code of 8 values '
                             'is read off a fixed grid of this resolution'},
                    {'reconstruction': {'shape': [None, 1, 16, 16],
                                        'dtype': 'float32',
                                        'units': 'raw'},
                     'latent': {'shape': [None, 8],
                                'dims': ['batch', 8],
                                'dtype': 'float32',
                                'values_per_image': 8,
                                'at_resolution': [16, 16]},
                     'score': {'shape': [None],
                               'dtype': 'float32',
                               'definition': 'mean((dec(enc(z)) - z)^2, axis=(1, 2, 3)), z = (x - '
                                             'mean) / std'},
                     'error_map': {'shape': [None, 1, 16, 16],
                                   'dtype': 'float32',
                                   'definition': 'mean((dec(enc(z)) - z)^2, axis=1, keepdims), z '
                                                 '= (x - mean) / std'}}]}


def test_the_registry_picks_one_contract_per_kind():
    assert type(contract_for(MLP)) is VectorContract
    assert type(contract_for(CONV)) is ImageContract
    assert type(contract_for(DENSE)) is FixedImageContract
    assert contract_for(MLP) is contract_for(ArchSpec.from_json(MLP.to_json()))  # cached
    assert MLP.contract is contract_for(MLP)
    bad = ArchSpec((30,), (), 4, (), backbone="rnn")
    with pytest.raises(SpecError, match="backbone must be one of mlp, conv, denoiser, got 'rnn'"):
        contract_class(bad)


def test_a_registered_contract_takes_its_specs():
    from metaae_edge import contracts

    class Wide(VectorContract):
        kind = "wide"

        @classmethod
        def matches(cls, spec):
            return spec.backbone == "mlp" and spec.input_dim > 100

    saved = list(CONTRACTS)
    register_contract(Wide, first=True)
    try:
        wide = ArchSpec((200,), (), 4, ())
        assert type(contract_for(wide)) is Wide and wide.describe() == "mlp 200 -> [4] -> 200"
        assert type(contract_for(MLP)) is VectorContract
    finally:
        CONTRACTS[:] = saved
        contracts._cached.cache_clear()
    assert type(contract_for(ArchSpec((200,), (), 4, ()))) is VectorContract


@pytest.mark.parametrize("spec,key", [(MLP, "mlp"), (CONV, "conv"), (DENSE, "dense")])
def test_manifest_io_section_is_byte_identical_to_the_old_writer(spec, key):
    from metaae_edge.exporters.bundle import io_section

    got = json.dumps(contract_for(spec).io_section(), indent=2)
    assert got == json.dumps(tuple(OLD_IO[key]), indent=2)
    assert io_section(spec) == contract_for(spec).io_section()


def test_vector_inputs():
    c = contract_for(MLP)
    x = np.zeros((3, 30), np.float32)
    assert c.coerce_input(x) is x  # fast path: no copy
    assert c.coerce_input(np.zeros(30)).shape == (1, 30)
    with pytest.raises(InputError, match=r"expected \(batch, 30\) float32 samples; got "
                                         r"\(3, 29\)\. This bundle was built for 30 features"):
        c.coerce_input(np.zeros((3, 29)))
    with pytest.raises(InputError, match="got strings"):
        c.coerce_input([["a"] * 30])
    with pytest.raises(InputError, match="latent size is 4"):
        c.coerce_latent(np.zeros((2, 5)))
    with pytest.raises(DataError, match="has 29 features, the bundle expects 30"):
        c.check_data(np.zeros((3, 29)))
    with pytest.raises(DataError, match=r"parity reference must be a non-empty numeric "
                                        r"\(samples, 30\)"):
        c.check_reference(np.zeros((3, 29)))
    assert c.latent_shape() == (4,) and c.latent_size() == 4
    assert not c.has_error_map and c.infer_outputs == ("reconstruction", "latent", "score")


def test_image_inputs():
    c = contract_for(CONV)
    x = np.zeros((2, 1, 8, 12), np.float32)
    assert c.coerce_input(x) is x
    assert c.coerce_input(np.zeros((8, 12))).shape == (1, 1, 8, 12)  # one grayscale image
    with pytest.raises(InputError, match="multiples of 4; crop or pad the images, e.g. to 8x12"):
        c.coerce_input(np.zeros((2, 1, 9, 12)))
    with pytest.raises(InputError, match="channels-last"):
        c.coerce_input(np.zeros((2, 8, 12, 1)))
    assert c.coerce_latent(np.zeros((2, 2, 3, 5))).shape == (2, 2, 3, 5)  # any latent size
    assert c.check_data(np.zeros((3, 16 * 24))).shape == (3, 1, 16, 24)  # flattened samples
    with pytest.raises(DataError, match="with H and W multiples of 4"):
        c.check_data(np.zeros((3, 1, 6, 8)))
    assert c.latent_shape() == (2, 4, 6) and c.latent_shape((32, 32)) == (2, 8, 8)
    assert c.infer_outputs == ("reconstruction", "latent", "error_map", "score")
    assert (c.channels, c.spatial_multiple, c.fixed_hw) == (1, 4, None)


def test_fixed_size_inputs():
    c = contract_for(DENSE)
    with pytest.raises(InputError, match=r"this bundle runs at 16x16 only \(dense code\); got "
                                         r"8x8: resize or crop the images to 16x16"):
        c.coerce_input(np.zeros((2, 1, 8, 8), np.float32))
    assert c.coerce_input(np.zeros((16, 16))).shape == (1, 1, 16, 16)
    z = np.zeros((2, 8), np.float32)
    assert c.coerce_latent(z) is z  # dense codes are vectors
    with pytest.raises(InputError, match="latent codes are 8 values per image"):
        c.coerce_latent(np.zeros((2, 7)))
    with pytest.raises(DataError, match="this bundle runs at 16x16 only"):
        c.check_data(np.zeros((2, 1, 32, 32)))
    with pytest.raises(DataError, match="this architecture runs at 16x16 only"):
        c.check_reference(np.zeros((2, 1, 32, 32)))
    assert c.latent_shape() == c.latent_shape((32, 32)) == (8,)
    assert (c.fixed_hw, c.latent_width, c.spatial_multiple) == ((16, 16), 8, 4)


def test_trt_profiles_match_the_old_values():
    assert contract_for(MLP).trt_profile("autoencoder") == ("x", 30)
    assert contract_for(MLP).trt_profile("decoder") == ("latent", 4)
    assert trt_profile_options("x", 30, 4096) == {
        "trt_profile_min_shapes": "x:1x30", "trt_profile_opt_shapes": "x:64x30",
        "trt_profile_max_shapes": "x:4096x30"}
    box = image_profile(CONV)
    assert box == {"min": (1, 4, 4), "opt": (1, 16, 24), "max": (1, 64, 96)}
    assert latent_profile(CONV, box) == {"min": (2, 1, 1), "opt": (2, 4, 6), "max": (2, 16, 24)}
    assert contract_for(CONV).trt_profile("decoder") == ("latent", latent_profile(CONV, box))
    assert trt_profile_options("x", box, 64) == {
        "trt_profile_min_shapes": "x:1x1x4x4", "trt_profile_opt_shapes": "x:16x1x16x24",
        "trt_profile_max_shapes": "x:64x1x64x96"}
    with pytest.raises(InputError, match="two positive multiples of 4"):
        image_profile(CONV, max_hw=(30, 30))
    fixed = contract_for(DENSE)
    assert fixed.input_profile() == {k: (1, 16, 16) for k in ("min", "opt", "max")}
    assert fixed.trt_profile("decoder") == ("latent", {k: (8,) for k in ("min", "opt", "max")})
    assert fixed.trt_max_batch == contract_for(CONV).trt_max_batch == 64
    with pytest.raises(InputError, match="runs at 16x16 only"):
        fixed.input_profile(max_hw=(32, 32))


def test_describe_and_sizes_delegate_to_the_contract():
    assert MLP.describe() == "mlp 30 -> 16 relu -> [4] -> 16 tanh -> 30"
    assert CONV.describe() == ("conv 1x16x24 -> /2 8c k3 relu -> /2 8c k3 tanh -> [2x4x6] -> "
                               "x2 8c k3 relu -> x2 8c k3 relu -> 1x16x24")
    assert DENSE.describe() == ("conv 1x16x16 -> /2 8c k3 relu -> /2 8c k3 tanh -> 2x4x4 -> "
                                "[dense 8] -> x2 8c k3 relu -> x2 8c k3 relu -> 1x16x16")
    assert MLP.param_count() == (30 * 16 + 16) + (16 * 4 + 4) + (4 * 16 + 16) + (16 * 30 + 30)
    assert DENSE.dense_layers() == [(32, 8), (8, 32)] and CONV.dense_layers() == []
    assert CONV.macs((32, 48)) > CONV.macs()
    with pytest.raises(SpecError, match="conv_layers"):
        MLP.conv_layers()


def test_spec_validation_messages_per_kind():
    with pytest.raises(SpecError, match=r"an mlp ArchSpec needs a 1-D input_shape"):
        ArchSpec((3, 4), (), 2, ()).validate()
    with pytest.raises(SpecError, match="prefilter is only defined for the conv backbone"):
        ArchSpec((30,), (), 2, (), prefilter="median3").validate()
    with pytest.raises(SpecError, match="a conv linear_bypass needs a dense code"):
        ArchSpec(CONV.input_shape, CONV.encoder, 2, CONV.decoder, backbone="conv",
                 linear_bypass=True).validate()
    ArchSpec(DENSE.input_shape, DENSE.encoder, 2, DENSE.decoder, backbone="conv",
             dense_latent=8, linear_bypass=True).validate()  # a dense code allows it
    with pytest.raises(SpecError, match="2 stages need H and W divisible by 4, got 18x24"):
        ArchSpec((1, 18, 24), CONV.encoder, 2, CONV.decoder, backbone="conv").validate()


def test_reference_maths_equal_a_hand_computation():
    torch = pytest.importorskip("torch")
    c = contract_for(MLP)
    z = torch.zeros(2, 30)
    r = torch.zeros(2, 30)
    r[0, :3] = torch.tensor([1.0, 2.0, 3.0])
    r[1, 0] = 3.0
    score, emap = c.torch_errors(r, z)
    assert emap is None
    assert torch.allclose(score, torch.tensor([14 / 30, 9 / 30]))
    ci = contract_for(CONV)
    zi = torch.zeros(1, 1, 4, 4)
    ri = torch.zeros(1, 1, 4, 4)
    ri[0, 0, 0, 0], ri[0, 0, 3, 2] = 2.0, 1.0
    score, emap = ci.torch_errors(ri, zi)
    want = torch.zeros(1, 1, 4, 4)
    want[0, 0, 0, 0], want[0, 0, 3, 2] = 4.0, 1.0
    assert torch.equal(emap, want) and torch.allclose(score, torch.tensor([5 / 16]))
    mean, std = torch.tensor([0.5]), torch.tensor([2.0])
    outs = ci.torch_outputs(zi * std + mean, zi, "lat", ri, mean, std)
    assert len(outs) == 4 and outs[1] == "lat" and torch.equal(outs[0], ri * std + mean)
    assert torch.allclose(outs[2], score) and torch.equal(outs[3], emap)


def test_the_base_contract_is_abstract():
    with pytest.raises(NotImplementedError):
        IOContract.matches(MLP)


# -- what the CLI, the bundle loader and the exporters ask per kind ---------------------
# The texts below are those the commands and runtime/bundle.py printed / raised before the
# contracts owned them (for the specs above).
_CONV_ARCH = ("conv 1x16x24 -> /2 8c k3 relu -> /2 8c k3 tanh -> [2x4x6] -> x2 8c k3 relu -> "
              "x2 8c k3 relu -> 1x16x24")
_DENSE_ARCH = ("conv 1x16x16 -> /2 8c k3 relu -> /2 8c k3 tanh -> 2x4x4 -> [dense 8] -> "
               "x2 8c k3 relu -> x2 8c k3 relu -> 1x16x16")
_RE_EXPORT = "; the manifest was edited or is incompatible: re-export the bundle"


@pytest.mark.parametrize("spec,rows", [
    (MLP, [("size", "1,154 params, 1,088 MACs/sample"),
           ("input", "(batch, 30) float32 raw; latent 4")]),
    (CONV, [("size", "1,491 params, 283,776 MACs/image at 16x24"),
            ("input", "images (batch, 1, H, W) float32 raw pixels, NCHW; H and W any "
                      "multiples of 4 (adapted at 1 x 16 x 24)"),
            ("latent", "2 x H/4 x W/4 (2 x 4 x 6 at 16x24); 48 bytes per image at int8 "
                       "latent")]),
    (DENSE, [("size", "2,043 params, 189,696 MACs/image at 16x16"),
             ("input", "images (batch, 1, 16, 16) float32 raw pixels, NCHW; fixed size "
                       "16x16 only (dense code)"),
             ("latent", "dense code of 8 values (batch, 8); 8 bytes per image at int8 "
                        "latent")]),
])
def test_inspect_rows_per_kind(spec, rows):
    assert contract_for(spec).inspect_rows() == rows


@pytest.mark.parametrize("spec,line", [
    (MLP, "  params 1,154  MACs/sample 1,088"),
    (CONV, "  params 1,491  MACs/image at 16x24 283,776  latent 2x4x6 (48 bytes per image "
           "at int8)"),
    (DENSE, "  params 2,043  MACs/image at 16x16 189,696  latent dense 8 (runs at 16x16 "
            "only) (8 bytes per image at int8)"),
])
def test_export_size_summary_per_kind(spec, line):
    assert contract_for(spec).size_summary() == line


def test_manifest_input_errors_per_kind():
    for spec in (MLP, CONV, DENSE):  # what the exporter writes is accepted
        c = contract_for(spec)
        assert c.manifest_input_error(c.io_section()[0]) is None
    vec = contract_for(MLP)
    assert vec.manifest_input_error({"shape": [None, 7], "layout": "x"}) == (
        "input.shape is [None, 7], expected [null, 30] for this architecture")
    img, inp = contract_for(CONV), contract_for(CONV).io_section()[0]
    assert img.manifest_input_error({**inp, "spatial_multiple": True}) == (
        f"input.spatial_multiple is true, expected 4 for this conv architecture "
        f"({_CONV_ARCH}){_RE_EXPORT}")
    assert img.manifest_input_error({**inp, "fixed_hw": [16, 16]}) == (
        f"input.fixed_hw is [16, 16], expected null for this conv architecture "
        f"({_CONV_ARCH}){_RE_EXPORT}")
    assert img.manifest_input_error({**inp, "fixed_hw": None}) is None
    fixed, inp = contract_for(DENSE), contract_for(DENSE).io_section()[0]
    assert fixed.manifest_input_error({**inp, "shape": [None, 1, None, None]}) == (
        f"input.shape is [null, 1, null, null], expected [null, 1, 16, 16] for this conv "
        f"architecture ({_DENSE_ARCH}){_RE_EXPORT}")
    assert fixed.manifest_input_error({**inp, "layout": "NHWC", "fixed_hw": None}) == (
        f'input.layout is "NHWC", expected "NCHW" for this conv architecture '
        f"({_DENSE_ARCH}){_RE_EXPORT}")  # the first failing key in order is named
    assert fixed.manifest_input_error({**inp, "fixed_hw": None}).startswith(
        "input.fixed_hw is null, expected [16, 16]")


def test_normalizer_width_and_profile_hw_options_per_kind():
    assert [contract_for(s).normalizer_width for s in (MLP, CONV, DENSE)] == [30, 1, 1]
    vec = contract_for(MLP)
    assert vec.profile_hw_error(None, None, None) is None
    assert vec.profile_hw_error(None, "32x32", None) == (
        "--min-hw / --opt-hw / --max-hw apply to image bundles only; this bundle takes "
        "feature vectors")
    assert contract_for(CONV).profile_hw_error("8x8", None, "64x64") is None
    assert contract_for(DENSE).profile_hw_error(None, "16x16", None) is None


def test_cli_runner_and_sample_reader_hooks_per_kind(tmp_path):
    from metaae_edge.commands.image_run import run_images
    from metaae_edge.commands.vector_run import run_vectors
    from metaae_edge.runtime.images import read_image_batch
    from metaae_edge.runtime.io import read_array

    vec, img, fixed = (contract_for(s) for s in (MLP, CONV, DENSE))
    assert vec.hook("cli_runner") is run_vectors and vec.hook("sample_reader") is read_array
    for c in (img, fixed):
        assert c.hook("cli_runner") is run_images and c.hook("sample_reader") is read_image_batch
    np.save(tmp_path / "stack.npy", np.full((2, 16, 24), 255, np.uint8))
    got = img.hook("sample_reader")(tmp_path / "stack.npy")
    assert got.shape == (2, 1, 16, 24) and got.dtype == np.float32 and got.max() == 1.0
