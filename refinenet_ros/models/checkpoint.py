"""Strict checkpoint loading, including the official Light-Weight RefineNet key layout.

Checkpoints arrive bare or wrapped (``model``, ``state_dict``, ``segmenter``), with or
without DataParallel's ``module.`` prefix, in our names or the published ones. Loading is
strict: a missing, unexpected or mis-shaped tensor raises ``CheckpointError`` naming it.
"""
import re

import torch

WRAPPER_KEYS = ("model", "state_dict", "segmenter")
# Last layer with one output channel per class: ours, the official layouts, and GCN (whose
# last layer is a boundary-refinement conv).
CLASSIFIER_KEYS = ("classifier.weight", "segm.weight", "clf_conv.weight", "final_refine.1.conv2.weight")

# The official key map, one row per rule: (family, published name, our name). In both names
# "{x}" is an integer field, "{x+N}" / "{N-x}" its published offset or reflection, and "{t}"
# the rest of the key. Rows are tried in order, both ways.
OFFICIAL_KEY_MAP = (
    # MobileNet-v2 (upstream models/mobilenet.py): layer1 is the stem, layer2..8 the stages,
    # conv3..conv8 the decoder inputs fine-to-coarse, crp1..crp4 / conv_adapt2..4 likewise.
    ("mbv2", "layer1.0.{t}", "encoder.stem.conv.{t}"),
    ("mbv2", "layer1.1.{t}", "encoder.stem.bn.{t}"),
    ("mbv2", "layer{s+2}.{b}.output.0.0.{t}", "encoder.stages.{s}.{b}.expand.conv.{t}"),
    ("mbv2", "layer{s+2}.{b}.output.0.1.{t}", "encoder.stages.{s}.{b}.expand.bn.{t}"),
    ("mbv2", "layer{s+2}.{b}.output.1.0.{t}", "encoder.stages.{s}.{b}.depthwise.conv.{t}"),
    ("mbv2", "layer{s+2}.{b}.output.1.1.{t}", "encoder.stages.{s}.{b}.depthwise.bn.{t}"),
    ("mbv2", "layer{s+2}.{b}.output.2.0.{t}", "encoder.stages.{s}.{b}.project.conv.{t}"),
    ("mbv2", "layer{s+2}.{b}.output.2.1.{t}", "encoder.stages.{s}.{b}.project.bn.{t}"),
    ("mbv2", "conv7.weight", "decoder.levels.0.laterals.0.weight"),
    ("mbv2", "conv8.weight", "decoder.levels.0.laterals.1.weight"),
    ("mbv2", "conv5.weight", "decoder.levels.1.laterals.0.weight"),
    ("mbv2", "conv6.weight", "decoder.levels.1.laterals.1.weight"),
    ("mbv2", "conv4.weight", "decoder.levels.2.laterals.0.weight"),
    ("mbv2", "conv3.weight", "decoder.levels.3.laterals.0.weight"),
    ("mbv2", "crp{4-l}.0.{c+1}_outvar_dimred.weight", "decoder.levels.{l}.crp.convs.{c}.weight"),
    ("mbv2", "conv_adapt{4-l}.weight", "decoder.levels.{l}.project.weight"),
    ("mbv2", "segm.{t}", "classifier.{t}"),
    # ResNet (upstream models/resnet.py): torchvision trunk names, decoder groups g1..g4
    # coarse-to-fine.
    ("resnet", "conv1.{t}", "encoder.conv1.{t}"),
    ("resnet", "bn1.{t}", "encoder.bn1.{t}"),
    ("resnet", "layer{k}.{t}", "encoder.layer{k}.{t}"),
    ("resnet", "p_ims1d2_outl1_dimred.weight", "decoder.levels.0.laterals.0.weight"),
    ("resnet", "p_ims1d2_outl{l+1}_dimred.weight", "decoder.levels.{l}.laterals.0.0.weight"),
    ("resnet", "adapt_stage{l+1}_b2_joint_varout_dimred.weight",
     "decoder.levels.{l}.laterals.0.1.weight"),
    ("resnet", "mflow_conv_g{l+1}_pool.0.{c+1}_outvar_dimred.weight",
     "decoder.levels.{l}.crp.convs.{c}.weight"),
    ("resnet", "mflow_conv_g{l+1}_b3_joint_varout_dimred.weight", "decoder.levels.{l}.project.weight"),
    ("resnet", "clf_conv.{t}", "classifier.{t}"),
)
_FIELD = re.compile(r"\{(?:(\d+)-)?([a-z])(?:\+(\d+))?\}")


def _template_regex(template):
    parts, pos = [], 0
    for m in _FIELD.finditer(template):
        parts.append(re.escape(template[pos:m.start()]))
        parts.append(r"(.+)" if m[2] == "t" else r"(\d+)")
        pos = m.end()
    parts.append(re.escape(template[pos:]))
    return re.compile("".join(parts))


def _rename(key, source_template, target_template):
    """Rename ``key`` from one template to the other, or return None if it does not match."""
    match = _template_regex(source_template).fullmatch(key)
    if match is None:
        return None
    fields = {}
    for field, raw in zip(_FIELD.finditer(source_template), match.groups()):
        reflect, name, offset = field.groups()
        value = raw if name == "t" else int(raw)
        if reflect:
            value = int(reflect) - value
        elif offset:
            value -= int(offset)
        fields[name] = value

    def render(field):
        reflect, name, offset = field.groups()
        value = fields[name]
        if reflect:
            value = int(reflect) - value
        elif offset:
            value += int(offset)
        return str(value)

    return _FIELD.sub(render, target_template)


def _translate(state_dict, family, to_official):
    rows = [(ours, official) if to_official else (official, ours)
            for fam, official, ours in OFFICIAL_KEY_MAP if fam == family]
    renamed = {}
    for key, value in state_dict.items():
        new_key = next((k for src, dst in rows if (k := _rename(key, src, dst)) is not None), key)
        renamed[new_key] = value
    return renamed


def from_official_layout(state_dict, family):
    """Rename a state_dict from the published layout to ours. Keys no rule knows are kept,
    so that the strict comparison reports them by name."""
    return _translate(state_dict, family, to_official=False)


def to_official_layout(state_dict, family):
    """Rename our state_dict to the published layout (the same table, read backwards)."""
    return _translate(state_dict, family, to_official=True)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not match the model exactly."""


def read_state_dict(path):
    """Read a checkpoint file and return its bare state_dict (wrappers and ``module.`` removed)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except Exception as exc:  # torch raises many types for corrupt files
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from exc
    return unwrap_state_dict(obj, source=str(path))


def unwrap_state_dict(obj, source="checkpoint"):
    while isinstance(obj, dict) and not _is_tensor_dict(obj):
        inner = next((obj[k] for k in WRAPPER_KEYS if k in obj and isinstance(obj[k], dict)), None)
        if inner is None:
            raise CheckpointError(
                f"{source}: not a state_dict and no {'/'.join(WRAPPER_KEYS)} entry holding one "
                f"(top-level keys: {sorted(map(str, obj))[:8]})")
        obj = inner
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{source}: expected a non-empty state_dict, got {type(obj).__name__}")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _is_tensor_dict(obj):
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def num_classes_in(state_dict):
    """Number of classes, read from the classifier's output channels (any supported layout)."""
    for key in CLASSIFIER_KEYS:
        if key in state_dict:
            return int(state_dict[key].shape[0])
    raise CheckpointError(f"no classifier weight ({', '.join(CLASSIFIER_KEYS)}) in checkpoint")


def check_state_dict(model, state_dict, source="checkpoint"):
    """Raise CheckpointError naming every missing, unexpected and mis-shaped key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state_dict) if state_dict[k].shape != expected[k].shape)
    problems = [f"{label} ({len(keys)}): {', '.join(keys[:10])}{' ...' if len(keys) > 10 else ''}"
                for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                    ("shape mismatches", mismatched)) if keys]
    if problems:
        raise CheckpointError(f"{source} does not match {type(model).__name__}: " + "; ".join(problems))
    broken = [k for k, v in state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:  # NaN/inf weights load and run, labelling every pixel class 0: refuse them
        raise CheckpointError(f"{source} holds non-finite values (NaN or inf) in {len(broken)} tensor(s): "
                              f"{', '.join(broken[:5])}{' ...' if len(broken) > 5 else ''}")


def load_checkpoint(model, path_or_state_dict):
    """Load weights strictly into ``model`` (in place) and return it.

    Accepts a path or an already read state_dict, in our layout or the official one.
    """
    if isinstance(path_or_state_dict, dict):
        source = "state_dict"
        state_dict = unwrap_state_dict(path_or_state_dict, source)
    else:
        source = str(path_or_state_dict)
        state_dict = read_state_dict(path_or_state_dict)
    family = getattr(model, "family", None)
    if family and not set(state_dict) <= set(model.state_dict()):
        state_dict = from_official_layout(state_dict, family)
    check_state_dict(model, state_dict, source)
    model.load_state_dict(state_dict, strict=True)
    return model
