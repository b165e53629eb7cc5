"""The seed architectures: original RefineNet (Lin et al. 2017) and GCN + BR (Peng et al. 2017)."""
import pytest
import torch
import torch.nn.functional as F
import torchvision
from conftest import randomise_batchnorm as _randomise_bn

from refinenet_ros.models import (
    CheckpointError,
    count_parameters,
    create_model,
    fuse_for_inference,
    load_checkpoint,
    load_imagenet_encoder,
)
from refinenet_ros.models.resnet import ResNetEncoder

# Measured at 21 classes (GCN: k = 15). The published figure for RefineNet-101 is 118M; ours is
# 118.05M (the decoder is 75.55M whatever the trunk), see refinenet_ros/models/refinenet.py.
PARAMS_AT_21 = {
    "refinenet50": 99_060_309, "refinenet101": 118_052_437, "refinenet152": 133_696_085,
    "gcn50": 26_087_588, "gcn101": 45_079_716, "gcn152": 60_723_364,
}
FAMILY_AND_STRIDE = {"refinenet": 4, "gcn": 1}
ODD_SIZES = [(65, 97), (33, 47)]
BIG = {"refinenet152", "gcn152", "refinenet101"}


@pytest.mark.parametrize("arch", [pytest.param(a, marks=pytest.mark.slow) if a in BIG else a
                                  for a in PARAMS_AT_21])
def test_parameter_count_attributes_and_odd_input_sizes(arch):
    model = create_model(arch, 21).eval()
    params = count_parameters(model)
    print(f"{arch}: {params:,} parameters at 21 classes")
    assert params == PARAMS_AT_21[arch]
    family = arch.rstrip("0123456789")
    assert model.family == family and model.num_classes == 21
    assert model.output_stride == FAMILY_AND_STRIDE[family]
    assert isinstance(model.encoder, ResNetEncoder)
    stride = model.output_stride
    with torch.no_grad():
        for h, w in ODD_SIZES:
            out = model(torch.randn(1, 3, h, w))
            assert out.shape == (1, 21, -(-h // stride), -(-w // stride))
            assert torch.isfinite(out).all()


@pytest.mark.slow
def test_refinenet101_matches_the_published_size():
    # Lin et al. report 118M parameters for RefineNet-101 (VOC, 21 classes): count the real model.
    assert abs(count_parameters(create_model("refinenet101", 21)) / 1e6 - 118) < 0.5


def test_gcn_kernel_size_is_a_parameter():
    model = create_model("gcn50", 4, kernel_size=7).eval()
    assert model.kernel_size == 7
    assert model.gcns[0].left[0].kernel_size == (7, 1) and model.gcns[0].right[0].kernel_size == (1, 7)
    default = create_model("gcn50", 4)
    # Each of the 4 GCNs holds 2 branches of (C_in*4*k + 4*4*k) weights: fewer with k = 7.
    assert count_parameters(model) < count_parameters(default)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 37, 51)).shape == (1, 4, 37, 51)
    with pytest.raises(ValueError, match="positive odd"):
        create_model("gcn50", 4, kernel_size=8)


@pytest.mark.parametrize("arch", ["refinenet50", "gcn50"])
def test_fused_model_folds_every_batchnorm_and_matches(arch):
    torch.manual_seed(2)
    model = _randomise_bn(create_model(arch, 6)).eval()
    fused = fuse_for_inference(model)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.Dropout)) for m in fused.modules())
    x = torch.randn(1, 3, 65, 97)
    with torch.no_grad():
        ref, out = model(x), fused(x.contiguous(memory_format=torch.channels_last))
    assert out.shape == ref.shape
    assert ((out - ref).abs().max() / ref.abs().max()).item() < 1e-4


def _segmentation_loss(model, images, labels):
    torch.manual_seed(1)  # the same dropout masks each time: only the weights differ
    logits = F.interpolate(model(images), size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, labels)


@pytest.mark.parametrize("arch", ["refinenet50", "gcn50"])
def test_one_training_step_on_cpu_lowers_the_loss(arch):
    torch.manual_seed(0)
    model = create_model(arch, 3).train()
    images, labels = torch.randn(2, 3, 48, 48), torch.randint(0, 3, (2, 48, 48))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    loss = _segmentation_loss(model, images, labels)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        after = _segmentation_loss(model, images, labels)
    assert torch.isfinite(after) and after.item() < loss.item(), (loss.item(), after.item())


@pytest.mark.parametrize("arch", ["refinenet50", "gcn50"])
def test_imagenet_trunk_initialisation(tmp_path, arch):
    reference = torchvision.models.resnet50()
    torch.save(reference.state_dict(), tmp_path / "resnet50_imagenet.pth")
    model = load_imagenet_encoder(create_model(arch, 5), tmp_path / "resnet50_imagenet.pth")
    assert torch.equal(model.encoder.layer4[2].conv3.weight, reference.layer4[2].conv3.weight)
    assert torch.equal(model.encoder.bn1.running_var, reference.bn1.running_var)


def test_checkpoints_round_trip_and_load_strictly(tmp_path):
    torch.manual_seed(3)
    source = create_model("gcn50", 5).eval()
    path = tmp_path / "gcn.pth"
    torch.save({"model": source.state_dict()}, path)
    target = load_checkpoint(create_model("gcn50", 5), path).eval()
    x = torch.randn(1, 3, 41, 57)
    with torch.no_grad():
        assert torch.equal(source(x), target(x))
    with pytest.raises(CheckpointError, match=r"gcns\.0\.left\.0\.weight: checkpoint"):
        load_checkpoint(create_model("gcn50", 5, kernel_size=9), path)
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint(create_model("refinenet50", 5), path)


@pytest.mark.parametrize("arch", ["refinenet50", "gcn50"])
def test_segmenter_runs_the_seed_archs_at_odd_frame_sizes(arch):
    import numpy as np

    from refinenet_ros import Segmenter
    segmenter = Segmenter(arch=arch, weights=None, num_classes=3, device="cpu", precision="fp32")
    frames = [np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
              for h, w in ((65, 97), (41, 33))]
    results = segmenter.segment(frames)
    for frame, result in zip(frames, results):
        assert result.labels.shape == frame.shape[:2] and result.labels.max() < 3
        assert result.color.shape == frame.shape
