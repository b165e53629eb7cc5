"""Launch-file helpers (the real launch files run in test_ros_install.py): launch-argument
parsing, parameter overrides, the RViz config per camera, and the docs generated from the
parameter and launch-argument tables."""
import pytest
import yaml

from refinenet_ros.ros import launch_helpers
from refinenet_ros.ros.params import PARAMETERS, markdown_table, sibling_topic


def test_topic_list_argument_forms():
    expected = ["/cam0/image_raw", "/cam1/image_raw"]
    for text in ("[/cam0/image_raw,/cam1/image_raw]", "/cam0/image_raw,/cam1/image_raw",
                 "['/cam0/image_raw', '/cam1/image_raw']", " /cam0/image_raw /cam1/image_raw "):
        assert launch_helpers.parse_topic_list(text) == expected
    for bad in ("", "[]", "[/a", "/a b$"):
        with pytest.raises(ValueError, match="image_topics"):
            launch_helpers.parse_topic_list(bad)
    overrides = launch_helpers.node_overrides({"image_topics": "/a/image", "input_width": "480",
                                               "input_height": "", "device": "cpu"})
    assert overrides == {"image_topics": ["/a/image"], "input_width": 480, "device": "cpu"}
    with pytest.raises(ValueError, match="input_width"):
        launch_helpers.node_overrides({"input_width": "wide"})
    assert launch_helpers.node_overrides({"autostart": "False"}) == {"autostart": False}
    with pytest.raises(ValueError, match="autostart must be true or false"):
        launch_helpers.node_overrides({"autostart": "later"})


def test_rviz_config_shows_colour_and_overlay_of_each_camera(repo_root):
    template = repo_root / "config" / "segmentation.rviz"
    shipped = yaml.safe_load(template.read_text())
    default_topics = launch_helpers.params_file_value(repo_root / "config" / "params.yaml", "image_topics")

    def image_topics(config):
        return [d["Topic"]["Value"] for d in config["Visualization Manager"]["Displays"]
                if d["Class"] == "rviz_default_plugins/Image"]

    # the shipped file matches the params file's default cameras
    assert image_topics(shipped) == [sibling_topic(t, f"segmentation/{o}") for t in default_topics for o in ("color", "overlay")]
    generated = yaml.safe_load(launch_helpers.rviz_config(template, ["/cam0/image_raw", "image_raw"], "robot"))
    assert image_topics(generated) == ["/cam0/segmentation/color", "/cam0/segmentation/overlay",
                                       "/robot/segmentation/color", "/robot/segmentation/overlay"]
    assert generated["Panels"] == shipped["Panels"] and generated["Window Geometry"] == shipped["Window Geometry"]


def test_readme_parameter_table_is_the_parameter_table(repo_root):
    assert markdown_table() in (repo_root / "README.md").read_text(), (
        "README's parameter table differs from refinenet_ros.ros.params.PARAMETERS; paste:\n"
        + markdown_table())


def test_readme_topic_rows_are_the_output_table(repo_root):
    from refinenet_ros.ros.outputs import topic_rows
    readme = (repo_root / "README.md").read_text()
    missing = [row for row in topic_rows() if row not in readme]
    assert not missing, "README's topic table differs from refinenet_ros.ros.outputs.OUTPUTS; paste:\n" + \
        "\n".join(missing)


def test_launch_argument_tables_in_the_docs_are_the_launch_tables(repo_root):
    docs = (repo_root / "docs" / "demo.md").read_text()
    for arguments in (launch_helpers.SEGMENTATION_ARGUMENTS, launch_helpers.SOURCE_ARGUMENTS):
        table = launch_helpers.launch_arguments_table(arguments)
        assert table in docs, f"docs/demo.md's launch-argument table is out of date; paste:\n{table}"
    assert set(launch_helpers.NODE_ARGUMENTS) <= set(PARAMETERS)


def test_fastdds_profile_only_where_the_user_set_none():
    assert launch_helpers.needs_fastdds_profile({})
    assert not launch_helpers.needs_fastdds_profile({"FASTRTPS_DEFAULT_PROFILES_FILE": "/mine.xml"})
    assert not launch_helpers.needs_fastdds_profile({"FASTDDS_DEFAULT_PROFILES_FILE": "/mine.xml"})


def test_the_profile_warning_only_where_fast_dds_has_no_profile():
    assert "config/fastdds.xml" in launch_helpers.profile_warning("rmw_fastrtps_cpp", {})
    assert launch_helpers.profile_warning("rmw_fastrtps_cpp", {"FASTDDS_DEFAULT_PROFILES_FILE": "/mine.xml"}) is None
    assert launch_helpers.profile_warning("rmw_cyclonedds_cpp", {}) is None


def test_the_cpus_argument_becomes_a_taskset_prefix_or_a_clear_error():
    assert launch_helpers.cpu_prefix("") is None
    assert launch_helpers.cpu_prefix(" 0 ") == "taskset -c 0"
    assert launch_helpers.cpu_prefix("0-1,3") == "taskset -c 0-1,3"
    with pytest.raises(ValueError, match="CPU numbers and ranges"):
        launch_helpers.cpu_prefix("first two")
    with pytest.raises(ValueError, match="none of these CPUs is available"):
        launch_helpers.cpu_prefix("4096")
