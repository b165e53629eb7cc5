"""The fields of a model description (:mod:`.description`), each checked where it is stated,
with an error that names the file and the field."""
OUTPUT_KINDS = ("logits", "probabilities", "labels")
COLOR_ORDERS = ("rgb", "bgr")
# What a model from elsewhere must state: nothing about its input or output can be guessed.
REQUIRED = ("classes", "input.color_order", "input.scale", "input.mean", "input.std", "output")
INPUT_FIELDS = ("color_order", "scale", "mean", "std", "size", "size_multiple")
HELP = "docs/models.md, 'Bring your own model'"


class DescriptionError(ValueError):
    """A model description that is missing, malformed or contradicts its model."""


def checked_mapping(raw, source):
    """``raw`` with every field it states checked; the error names the source and field."""
    def fail(what):
        raise DescriptionError(f"model description {source}: {what} ({HELP})")
    mapping = dict(raw)
    if "classes" in mapping:
        classes = mapping["classes"]
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            fail("classes must be a non-empty list of names")
        if len(set(classes)) != len(classes):
            fail("classes has a name twice")
    if mapping.get("palette") is not None:
        palette = mapping["palette"]
        if not isinstance(palette, list) or not all(
                isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
                for c in palette):
            fail("palette must be a list of [r, g, b] integers 0-255")
    if "output" in mapping and mapping["output"] not in OUTPUT_KINDS:
        fail(f"output must be one of {', '.join(OUTPUT_KINDS)}, got {mapping['output']!r}")
    for key in ("num_classes", "output_stride"):
        if key in mapping and (isinstance(mapping[key], bool) or not isinstance(mapping[key], int)
                               or mapping[key] < 1):
            fail(f"{key} must be a positive integer, got {mapping[key]!r}")
    if "input" in mapping:
        mapping["input"] = _checked_input(mapping["input"], fail)
    return mapping


def _checked_input(raw, fail):
    if not isinstance(raw, dict):
        fail(f"input must be a mapping of {', '.join(INPUT_FIELDS)}")
    unknown = sorted(set(raw) - set(INPUT_FIELDS))
    if unknown:
        fail(f"input.{unknown[0]} is not a field (input has {', '.join(INPUT_FIELDS)})")
    checked = dict(raw)
    if "color_order" in raw and raw["color_order"] not in COLOR_ORDERS:
        fail(f"input.color_order must be rgb or bgr, got {raw['color_order']!r}")
    if "scale" in raw and not (_is_number(raw["scale"]) and raw["scale"] > 0):
        fail(f"input.scale must be a positive number, got {raw['scale']!r}")
    for key in ("mean", "std"):
        if key in raw:
            values = raw[key] if isinstance(raw[key], list) else [raw[key]]
            if len(values) == 1:
                values = values * 3
            if len(values) != 3 or not all(_is_number(v) for v in values) or \
                    (key == "std" and not all(v > 0 for v in values)):
                fail(f"input.{key} must be one or three numbers{' > 0' if key == 'std' else ''}, "
                     f"got {raw[key]!r}")
            checked[key] = tuple(float(v) for v in values)
    if raw.get("size") is not None:
        size = raw["size"]
        if not isinstance(size, list) or len(size) != 2 or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
            fail(f"input.size must be [height, width], got {size!r}")
        checked["size"] = tuple(size)
    if "size_multiple" in raw and (isinstance(raw["size_multiple"], bool) or
                                   not isinstance(raw["size_multiple"], int) or raw["size_multiple"] < 1):
        fail(f"input.size_multiple must be a positive integer, got {raw['size_multiple']!r}")
    return checked


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)
