"""Model core: exact parameter counts, official-layout checkpoints, strict loading, fusion."""
import pytest
import torch
from conftest import randomise_batchnorm as _randomise_bn

from refinenet_ros.models import (
    CheckpointError,
    count_parameters,
    create_model,
    fuse_for_inference,
    load_checkpoint,
    load_imagenet_encoder,
    to_official_layout,
)

PARAMS_AT_21 = {"mbv2": 3_284_565, "rf_lw50": 27_357_525, "rf_lw101": 46_349_653,
                "rf_lw152": 61_993_301}
FAMILY = {"mbv2": "mbv2", "rf_lw50": "resnet", "rf_lw101": "resnet", "rf_lw152": "resnet"}


@pytest.mark.parametrize("arch", sorted(PARAMS_AT_21))
def test_parameter_count_is_exact(arch):
    assert count_parameters(create_model(arch, 21)) == PARAMS_AT_21[arch]


def test_unknown_arch_and_bad_class_count_are_rejected():
    with pytest.raises(ValueError, match="unknown arch 'nope'"):
        create_model("nope", 21)
    with pytest.raises(ValueError, match="num_classes"):
        create_model("mbv2", 0)


@pytest.mark.parametrize("arch,size", [("mbv2", (161, 203)), ("mbv2", (64, 64)), ("rf_lw50", (161, 203)),
                                       ("mbv2", (33, 47))])
def test_logits_are_output_stride_4_with_ceil(arch, size):
    model = create_model(arch, 5).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, 5, -(-size[0] // 4), -(-size[1] // 4))


@pytest.mark.parametrize("arch", ["mbv2", "rf_lw50"])
def test_official_layout_checkpoint_round_trips(tmp_path, arch):
    torch.manual_seed(0)
    source = _randomise_bn(create_model(arch, 7)).eval()
    official = to_official_layout(source.state_dict(), FAMILY[arch])
    assert not any(k.startswith(("encoder.", "decoder.", "classifier.")) for k in official)
    path = tmp_path / "official.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in official.items()}}, path)
    target = load_checkpoint(create_model(arch, 7), path).eval()
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        assert torch.equal(source(x), target(x))


def test_official_mbv2_keys_written_by_hand_land_on_the_right_tensors():
    model = create_model("mbv2", 21)
    official = to_official_layout(model.state_dict(), "mbv2")
    # Published names, typed from the upstream code.
    assert torch.equal(official["layer3.0.output.1.0.weight"], model.encoder.stages[1][0].depthwise.conv.weight)
    assert torch.equal(official["layer2.0.output.0.0.weight"], model.encoder.stages[0][0].expand.conv.weight)
    assert torch.equal(official["crp4.0.1_outvar_dimred.weight"], model.decoder.levels[0].crp.convs[0].weight)
    assert torch.equal(official["conv8.weight"], model.decoder.levels[0].laterals[1].weight)
    assert torch.equal(official["conv_adapt2.weight"], model.decoder.levels[2].project.weight)
    assert torch.equal(official["segm.bias"], model.classifier.bias)


def test_official_resnet_keys_written_by_hand_land_on_the_right_tensors():
    model = create_model("rf_lw50", 21)
    official = to_official_layout(model.state_dict(), "resnet")
    levels = model.decoder.levels
    assert torch.equal(official["p_ims1d2_outl1_dimred.weight"], levels[0].laterals[0].weight)
    assert torch.equal(official["mflow_conv_g1_pool.0.1_outvar_dimred.weight"], levels[0].crp.convs[0].weight)
    assert torch.equal(official["adapt_stage2_b2_joint_varout_dimred.weight"], levels[1].laterals[0][1].weight)
    assert torch.equal(official["mflow_conv_g4_pool.0.4_outvar_dimred.weight"], levels[3].crp.convs[3].weight)
    assert torch.equal(official["clf_conv.weight"], model.classifier.weight)
    assert torch.equal(official["layer4.2.conv3.weight"], model.encoder.layer4[2].conv3.weight)


@pytest.mark.parametrize("wrapper", ["model", "state_dict", "segmenter", None])
def test_wrapped_and_prefixed_checkpoints_load(tmp_path, wrapper):
    source = create_model("mbv2", 4)
    state = {"module." + k: v for k, v in source.state_dict().items()}
    path = tmp_path / "ckpt.pth"
    torch.save({wrapper: state, "epoch": 3} if wrapper else state, path)
    target = load_checkpoint(create_model("mbv2", 4), path)
    assert torch.equal(target.classifier.weight, source.classifier.weight)


def test_missing_key_is_named(tmp_path):
    state = create_model("mbv2", 4).state_dict()
    del state["decoder.levels.2.crp.convs.1.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): decoder\.levels\.2\.crp\.convs\.1\.weight"):
        load_checkpoint(create_model("mbv2", 4), state)


def test_misshaped_and_unexpected_keys_are_named():
    state = create_model("mbv2", 4).state_dict()
    state["classifier.weight"] = torch.zeros(4, 256, 1, 1)
    state["segm_extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(create_model("mbv2", 4), state)
    message = str(info.value)
    assert "classifier.weight: checkpoint (4, 256, 1, 1) vs model (4, 256, 3, 3)" in message
    assert "unexpected keys (1): segm_extra.weight" in message


def test_wrong_class_count_fails_loudly():
    with pytest.raises(CheckpointError, match="classifier.bias"):
        load_checkpoint(create_model("mbv2", 5), create_model("mbv2", 4).state_dict())


def test_corrupt_and_missing_files_raise_checkpoint_error(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*bad.pth"):
        load_checkpoint(create_model("mbv2", 4), bad)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(create_model("mbv2", 4), tmp_path / "absent.pth")
    torch.save({"epoch": 1, "notes": {"a": 1}}, tmp_path / "no_weights.pth")
    with pytest.raises(CheckpointError, match="not a state_dict"):
        load_checkpoint(create_model("mbv2", 4), tmp_path / "no_weights.pth")


@pytest.mark.parametrize("arch", ["mbv2", "rf_lw50"])
def test_fused_model_matches_unfused(arch):
    torch.manual_seed(1)
    model = _randomise_bn(create_model(arch, 11)).eval()
    fused = fuse_for_inference(model)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.Dropout)) for m in fused.modules())
    assert all(not p.requires_grad for p in fused.parameters())
    x = torch.randn(2, 3, 161, 203)
    with torch.no_grad():
        ref, out = model(x), fused(x.contiguous(memory_format=torch.channels_last))
    assert out.shape == ref.shape
    assert ((out - ref).abs().max() / ref.abs().max()).item() < 1e-4
    # the original is untouched
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_imagenet_mobilenet_v2_init_keeps_torchvision_features(imagenet_mbv2_weights):
    """Our encoder (with the extra identity expand conv) reproduces torchvision's features."""
    import torchvision
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(torch.load(imagenet_mbv2_weights, weights_only=True))
    model = load_imagenet_encoder(create_model("mbv2", 11), imagenet_mbv2_weights).eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        ours = model.encoder(x)[-1][-1]
        theirs = reference.eval().features[:18](x)
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4)


def test_imagenet_init_rejects_a_wrong_file(tmp_path):
    torch.save(create_model("mbv2", 3).state_dict(), tmp_path / "not_imagenet.pth")
    with pytest.raises(CheckpointError, match="not a torchvision ImageNet state_dict"):
        load_imagenet_encoder(create_model("mbv2", 3), tmp_path / "not_imagenet.pth")
