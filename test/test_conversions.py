"""sensor_msgs/Image <-> numpy and CameraInfo scaling (real message classes, no DDS)."""
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image, RegionOfInterest

from refinenet_ros.ros.encodings import to_rgb
from refinenet_ros.ros.conversions import (
    ENCODINGS,
    ImageConversionError,
    image_to_numpy,
    numpy_to_image,
    scale_camera_info,
)

RNG = np.random.default_rng(0)


def random_pixels(encoding, height=6, width=5):
    dtype, channels = ENCODINGS[encoding].dtype, ENCODINGS[encoding].channels
    shape = (height, width) if channels == 1 else (height, width, channels)
    return RNG.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_round_trip_every_encoding(encoding):
    pixels = random_pixels(encoding)
    msg = numpy_to_image(pixels, encoding)
    assert (msg.height, msg.width, msg.encoding) == (6, 5, encoding)
    assert msg.step == pixels.shape[1] * pixels.itemsize * (pixels.shape[2] if pixels.ndim == 3 else 1)
    assert len(msg.data) == msg.step * msg.height
    np.testing.assert_array_equal(image_to_numpy(msg), pixels)


def test_receive_is_zero_copy_and_honours_row_padding():
    pixels = random_pixels("rgb8", 4, 3)
    padded = np.zeros((4, 16), np.uint8)  # 9 bytes of pixels + 7 bytes of padding per row
    padded[:, :9] = pixels.reshape(4, 9)
    msg = Image(height=4, width=3, encoding="rgb8", step=16, data=padded.tobytes())
    view = image_to_numpy(msg)
    np.testing.assert_array_equal(view, pixels)
    assert np.shares_memory(view, np.frombuffer(msg.data, np.uint8))
    np.testing.assert_array_equal(to_rgb(view, msg.encoding), pixels)


def test_big_endian_mono16_is_decoded():
    values = np.array([[1, 256, 65535]], dtype=">u2")
    msg = Image(height=1, width=3, encoding="mono16", step=6, is_bigendian=1, data=values.tobytes())
    decoded = image_to_numpy(msg)
    assert decoded.dtype == np.uint16 and decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, [[1, 256, 65535]])


@pytest.mark.parametrize("encoding,expected", [
    ("bgr8", lambda p: p[:, :, ::-1]), ("8UC3", lambda p: p[:, :, ::-1]),
    ("rgba8", lambda p: p[:, :, :3]), ("bgra8", lambda p: p[:, :, 2::-1]), ("8UC4", lambda p: p[:, :, 2::-1]),
    ("mono8", lambda p: np.repeat(p[:, :, None], 3, 2)), ("8UC1", lambda p: np.repeat(p[:, :, None], 3, 2)),
    ("mono16", lambda p: np.repeat((p >> 8).astype(np.uint8)[:, :, None], 3, 2)),
    ("16UC1", lambda p: np.repeat((p >> 8).astype(np.uint8)[:, :, None], 3, 2)),
])
def test_message_to_rgb(encoding, expected):
    pixels = random_pixels(encoding)
    msg = numpy_to_image(pixels, encoding)
    rgb = to_rgb(image_to_numpy(msg), msg.encoding)
    assert rgb.dtype == np.uint8 and rgb.shape == (6, 5, 3)
    np.testing.assert_array_equal(rgb, expected(pixels))


@pytest.mark.parametrize("fields,reason", [
    (dict(encoding="yuv422"), "unsupported encoding 'yuv422'"),
    (dict(height=0, width=0, step=0, data=b""), "empty image (0x0)"),
    (dict(step=10), "step 10 is smaller than width 5 x 3 bytes per pixel = 15"),
    (dict(data=bytes(15 * 6 - 1)), "data is 89 bytes, expected step 15 x height 6 = 90 (truncated)"),
    (dict(data=bytes(15 * 7)), "data is 105 bytes, expected step 15 x height 6 = 90"),
])
def test_malformed_images_are_rejected_with_the_reason(fields, reason):
    msg = Image(height=6, width=5, encoding="rgb8", step=15, data=bytes(90))
    for name, value in fields.items():
        setattr(msg, name, value)
    with pytest.raises(ImageConversionError) as info:
        image_to_numpy(msg)
    assert reason in str(info.value)


def test_numpy_to_image_checks_shape_and_dtype():
    with pytest.raises(ImageConversionError, match="rgb8 needs 3 channel"):
        numpy_to_image(np.zeros((4, 4), np.uint8), "rgb8")
    with pytest.raises(ImageConversionError, match="mono16 needs 1 channel"):
        numpy_to_image(np.zeros((4, 4), np.uint8), "mono16")
    with pytest.raises(ImageConversionError, match="unsupported encoding"):
        numpy_to_image(np.zeros((4, 4), np.uint8), "jpeg")


def make_info(width=640, height=480, **fields):
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob", d=[0.1, 0.0, 0.0, 0.0, 0.0])
    info.k = [500.0, 0.0, 320.5, 0.0, 510.0, 240.5, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [500.0, 0.0, 320.5, -25.0, 0.0, 510.0, 240.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    for name, value in fields.items():
        setattr(info, name, value)
    return info


def project(matrix, point):
    matrix = np.asarray(matrix, np.float64).reshape(3, -1)  # K (3 x 3) or P (3 x 4)
    homogeneous = matrix @ point[:matrix.shape[1]]
    return homogeneous[:2] / homogeneous[2]


@pytest.mark.parametrize("fields,full_to_image", [
    ({}, lambda u, v: (u, v)),
    # 2x2 binning of a 1280 x 960 sensor: pixel centres map as (u + 0.5) / 2 - 0.5
    (dict(width=1280, height=960, binning_x=2, binning_y=2), lambda u, v: ((u + 0.5) / 2 - 0.5, (v + 0.5) / 2 - 0.5)),
])
def test_scaled_camera_info_projects_points_onto_the_resized_pixels(fields, full_to_image):
    info = make_info(**fields)
    image_width, image_height = 640, 480  # the received image, after binning
    scaled = scale_camera_info(info, 160, 96)
    assert (scaled.width, scaled.height) == (160, 96)
    assert (scaled.binning_x, scaled.binning_y) == (0, 0)
    assert list(scaled.d) == list(info.d) and scaled.distortion_model == "plumb_bob"
    scale_x, scale_y = 160 / image_width, 96 / image_height
    for point in ([0.3, -0.2, 2.0, 1.0], [-1.0, 0.5, 4.0, 1.0]):
        point = np.array(point)
        for original, resized in ((info.k, scaled.k), (info.p, scaled.p)):
            u, v = full_to_image(*project(original, point))
            expected = ((u + 0.5) * scale_x - 0.5, (v + 0.5) * scale_y - 0.5)
            np.testing.assert_allclose(project(resized, point), expected, atol=1e-9)
    assert scaled.p[3] == pytest.approx(info.p[3] * 160 / info.width)  # Tx = -fx B scales with fx


def test_scaled_camera_info_folds_the_roi_and_keeps_the_header():
    info = make_info(roi=RegionOfInterest(x_offset=100, y_offset=50, width=320, height=240))
    info.header.frame_id = "cam"
    scaled = scale_camera_info(info, 320, 240)  # same size as the ROI image: only the offset moves
    assert scaled.header.frame_id == "cam"
    assert scaled.k[2] == pytest.approx(320.5 - 100) and scaled.k[5] == pytest.approx(240.5 - 50)
    assert scaled.roi.width == 0

