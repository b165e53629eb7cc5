"""image_source as a real process on real DDS topics: bags written here with rosbags, an image
folder and a video written with OpenCV, replayed and received with rclpy."""
import signal

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.serialization import serialize_message  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

H, W = 8, 12


def pixels(msg):
    channels = msg.step // msg.width
    return np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, channels)


def write_bag(path, storage, count=4, decoy_topic=None):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_JAZZY)
    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[storage]
    frames, stamps = [], []
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        connection = writer.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=typestore)
        decoy = decoy_topic and writer.add_connection(decoy_topic, "sensor_msgs/msg/Image", typestore=typestore)
        for i in range(count):
            frame = np.full((H, W, 3), (10 * i, 100, 255 - 10 * i), np.uint8)
            frame[i, i] = (1, 2, 3)
            msg = Image(height=H, width=W, encoding="rgb8", step=W * 3, data=frame.tobytes())
            msg.header.stamp.sec, msg.header.stamp.nanosec = 1000 + i, 500
            msg.header.frame_id = "recorded"
            stamp_ns = (1000 + i) * 10**9 + 500
            writer.write(connection, stamp_ns, serialize_message(msg))
            if decoy:
                msg.data = (255 - frame).tobytes()
                writer.write(decoy, stamp_ns - 1, serialize_message(msg))
            frames.append(frame)
            stamps.append((1000 + i, 500))
    return frames, stamps


def replay(ros_processes, topic_recorder, domain_id, args, count, timeout=90):
    recorder = topic_recorder(domain_id)
    recorder.record(Image, "/cam/image_raw", reliable=True)
    recorder.record(CameraInfo, "/cam/camera_info", reliable=True)
    process = ros_processes("image_source", ["--topic", "/cam/image_raw", "--reliable",
                                             "--wait-for-subscribers", "1", *args], domain_id)
    images = recorder.wait_for("/cam/image_raw", count, timeout, [process])
    infos = recorder.wait_for("/cam/camera_info", count, 10)
    return process, images, infos


@pytest.mark.parametrize("storage, domain_id", [("sqlite3", 45), ("mcap", 46)])
def test_replays_a_bag_with_recorded_stamps(tmp_path, storage, domain_id, ros_processes, topic_recorder):
    frames, stamps = write_bag(tmp_path / "bag", storage)
    process, images, infos = replay(ros_processes, topic_recorder, domain_id,
                                    ["--source", str(tmp_path / "bag"), "--rate", "20", "--no-restamp",
                                     "--frame-id", "cam0"], count=4)
    assert process.wait(timeout=60) == 0
    assert len(images) == 4 and len(infos) == 4
    for msg, frame, stamp in zip(images, frames, stamps):
        assert msg.encoding == "rgb8" and (msg.height, msg.width) == (H, W)
        np.testing.assert_array_equal(pixels(msg), frame)
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == stamp
        assert msg.header.frame_id == "cam0"
    assert all(i.width == W and i.height == H and i.header.frame_id == "cam0" for i in infos)


def test_restamps_bag_frames_and_picks_the_topic(tmp_path, ros_processes, topic_recorder):
    frames, _ = write_bag(tmp_path / "bag", "sqlite3", count=3, decoy_topic="/another/image")
    before = rclpy.clock.Clock().now().nanoseconds
    process, images, infos = replay(ros_processes, topic_recorder, 47,
                                    ["--source", str(tmp_path / "bag"), "--bag-topic", "/cam/image_raw",
                                     "--rate", "0"], count=3)
    assert process.wait(timeout=60) == 0
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in images]
    assert all(s > before for s in stamps) and stamps == sorted(stamps)
    # the bag's own timing (1 s apart) is kept: no frame is published before it is due
    assert all(s - stamps[0] >= (k - 0.05) * 1e9 for k, s in enumerate(stamps))
    assert [i.header.stamp for i in infos] == [m.header.stamp for m in images]
    np.testing.assert_array_equal(pixels(images[2]), frames[2])


def test_replays_an_image_folder_in_order_with_loop_and_max_frames(tmp_path, ros_processes, topic_recorder):
    colours = [(0, 0, 255), (0, 255, 0), (255, 0, 0)]
    for i, colour in enumerate(colours):
        cv2.imwrite(str(tmp_path / f"frame_{i:03d}.png"), np.full((H, W, 3), colour, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    process, images, _ = replay(ros_processes, topic_recorder, 48,
                                ["--source", str(tmp_path), "--rate", "30", "--loop", "--max-frames", "7"], count=7)
    assert process.wait(timeout=60) == 0
    assert len(images) == 7
    for i, msg in enumerate(images):
        assert msg.encoding == "bgr8"
        np.testing.assert_array_equal(pixels(msg)[0, 0], colours[i % 3])


def test_replays_a_video_resized(tmp_path, ros_processes, topic_recorder):
    path = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (96, 64))
    assert writer.isOpened()
    greys = [40, 120, 200, 80, 160]
    for grey in greys:
        writer.write(np.full((64, 96, 3), grey, np.uint8))
    writer.release()
    process, images, infos = replay(ros_processes, topic_recorder, 49,
                                    ["--source", path, "--width", "48", "--height", "32"], count=5)
    assert process.wait(timeout=60) == 0
    assert len(images) == 5
    for msg, grey in zip(images, greys):
        assert (msg.width, msg.height, msg.step) == (48, 32, 48 * 3)
        assert abs(float(pixels(msg).mean()) - grey) < 6  # MJPG is lossy
    assert (infos[0].width, infos[0].height) == (48, 32)


def test_bad_source_gives_a_clear_error(tmp_path, ros_processes):
    process = ros_processes("image_source", ["--source", str(tmp_path / "missing.avi")], 50)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "missing.avi" in output and "does not exist" in output
    (tmp_path / "empty").mkdir()
    process = ros_processes("image_source", ["--source", str(tmp_path / "empty")], 50)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 2 and "holds no images" in output


def test_sigint_stops_a_looping_source_cleanly(tmp_path, ros_processes, topic_recorder):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((H, W, 3), np.uint8))
    process, images, _ = replay(ros_processes, topic_recorder, 51,
                                ["--source", str(tmp_path), "--rate", "50", "--loop"], count=3)
    assert len(images) >= 3 and process.poll() is None
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    assert "Traceback" not in output
