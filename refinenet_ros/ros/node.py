"""The ROS 2 segmentation node: camera images in, labels / colour / overlay / confidence out.

A managed (lifecycle) node. configure: read and check the parameters, load the model, create the
outputs; activate: subscribe to the watched cameras and start inference; deactivate: stop
inference and unsubscribe (the model stays loaded); cleanup: release the model; shutdown from
any state. With ``autostart`` (the default) it configures and activates itself at start.

Callbacks only put a frame, still serialised, into the frame intake (ros/intake); ros/pipeline.py's threads
segment and publish with the input's exact header. A camera is subscribed only while one of its
outputs has a subscriber. Parameters: config/params.yaml; states, topics: docs/node.md.

    ros2 run refinenet_ros segmentation_node --ros-args --params-file config/params.yaml
"""
import gc
import sys
import threading

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions

from ..engine.planning.streams import streams_refusal
from .camera import Camera, CameraConfig
from .diagnostics import NodeStats, unconfigured_report
from .failover import Failover
from .intake.memory import TrialMemory
from .intake.store import PendingFrame
from .intake.taking import FrameIntake
from .intake.trial import LiveTrial, trial_modes
from .launch_helpers import profile_warning
from .navigation import parse_mask_groups, publish_label_info
from .params import (
    Settings,
    check_input_pixels,
    check_value,
    check_values,
    declare_parameters,
)
from .pipeline import Collaborators, Pipeline
from .problems import ProblemLog
from .signals import ignore_signals, stop_event
from .startup import StartupError, build_segmenter, configured_lines, input_size_refusal

NODE_NAME = "segmentation_node"
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class SegmentationNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self._values = declare_parameters(self)
        self.segmenter, self.cameras, self._pipeline, self._settings = None, [], None, None
        self._label_info_publishers, self._configure_error = [], None
        self.finished = threading.Event()  # set by the shutdown transition
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        period = self._values["diagnostics_period"]
        self.create_timer(period if check_value("diagnostics_period", period) is None else 1.0,
                          self._publish_diagnostics)
        self._trial = None  # the live trial of the intake mode, while active
        self.create_timer(0.5, lambda: self._trial and self._trial.tick())
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._name_clash_warned = False
        warning = profile_warning(rclpy.get_rmw_implementation_identifier())
        if warning:  # the camera's process most likely has no profile either
            self.get_logger().warning(warning)
        if self._values["autostart"]:
            if self.trigger_configure() != SUCCESS:
                raise StartupError(self._configure_error)
            self.trigger_activate()

    @property
    def state(self):
        """The lifecycle state's label (rclpy offers no public getter: its get_state service
        answers from this same state machine)."""
        return self._state_machine.current_state[1]

    @property
    def processed_frames(self):
        """Frames published per camera since the last activation."""
        return self._pipeline.processed_frames if self._pipeline else [0] * len(self.cameras)

    # -- transitions ----------------------------------------------------------------------
    def on_configure(self, state):
        try:
            self._configure()
        except StartupError as exc:
            self._configure_error = str(exc)
            self.get_logger().error(f"configure failed: {exc}")
            self._release()
            return FAILURE
        for line in configured_lines(self.segmenter, [c.topic for c in self.cameras],
                                     self._settings.max_batch_size):
            self.get_logger().info(line)
        return SUCCESS

    def _configure(self):
        reason = check_values(self._values)
        if reason:
            raise StartupError(reason)
        self._settings = Settings.from_values(self._values)
        self.segmenter = build_segmenter(self._values)
        reason = input_size_refusal(self.segmenter, self._settings.input_size) or streams_refusal(
            self._values["frames_in_flight"], self.segmenter.network.spec)
        if reason:
            raise StartupError(reason)
        topics = self._values["image_topics"]
        qos = qos_profile_sensor_data if self._values["qos"] == "sensor_data" else \
            QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        try:
            mask_groups = parse_mask_groups(self._values["mask_groups"], self.segmenter.class_names)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        self._stats = NodeStats(topics)
        self._problems = ProblemLog(self.get_logger(), self._stats)
        self.cameras = [Camera(self, i, topic, qos, CameraConfig.from_values(
            self._values, i, mask_groups, self.segmenter.gives_confidence)) for i, topic in enumerate(topics)]
        self._label_info_publishers = publish_label_info(self, topics, self.segmenter.class_names)

    def on_activate(self, state):
        self._intake, self._stopping = FrameIntake(len(self.cameras)), threading.Event()
        modes = self._trial_modes()
        self._failover = Failover(self.segmenter, self.get_logger().error, self._after_fall_back)
        self._pipeline = Pipeline(Collaborators(
            intake=self._intake, stats=self._stats, segmenter=self.segmenter, cameras=self.cameras,
            settings=lambda: self._settings, problems=self._problems, stop=self._stopping,
            mode=lambda: self._trial.mode if self._trial else modes[0], failover=self._failover,
            context_ok=self.context.ok, max_in_flight=max(m.frames_in_flight for m in modes)))
        self._start_trial(modes)
        for camera in self.cameras:
            camera.set_active(True)
        self.get_logger().info("active: segmenting the cameras that have subscribers")
        return SUCCESS

    def on_deactivate(self, state):
        self._stop_pipeline()
        self.get_logger().info("inactive: no inference, the model stays loaded")
        return SUCCESS

    def on_cleanup(self, state):
        self._release()
        self.get_logger().info("unconfigured: model released")
        return SUCCESS

    def on_shutdown(self, state):
        self._release()
        self.finished.set()
        return SUCCESS

    def on_error(self, state):
        self._release()
        return SUCCESS

    def _trial_modes(self):
        return trial_modes(self._values["frames_in_flight"], self._values["wait_for_next_frame"], self.segmenter)

    def _start_trial(self, modes):
        memory = TrialMemory.of(self.segmenter, len(self.cameras), modes)
        self._trial = LiveTrial(modes, self._apply_mode, self._stats.trial_age, self._intake.arrivals.rate,
                                log=self.get_logger().info, memory=memory)

    def _after_fall_back(self):
        """Another backend runs now (failover.py): the modes it allows, tried afresh."""
        modes = self._trial_modes()
        self._pipeline.set_frames_in_flight(modes[0].frames_in_flight)
        self._start_trial(modes)

    def _apply_mode(self, mode):
        self._pipeline.set_frames_in_flight(mode.frames_in_flight)
        if self.segmenter.overlaps:  # a trial of the backend before a fall-back may still tick
            self.segmenter.set_streams(mode.frames_in_flight)

    def _stop_pipeline(self):
        self._trial = None
        for camera in self.cameras:
            camera.set_active(False)
        if self._pipeline is not None:
            self._stopping.set()
            self._intake.close()
            self._pipeline.join()
            self._pipeline = None

    def _release(self):
        """Back to unconfigured: no pipeline, subscriptions, outputs or model."""
        self._stop_pipeline()
        for camera in self.cameras:
            camera.destroy()
        for publisher in self._label_info_publishers:
            self.destroy_publisher(publisher)
        self.cameras, self._label_info_publishers, self.segmenter = [], [], None
        gc.collect()
        from ..engine.hardware.memory import trim_heap
        trim_heap()  # the model's pages go back to the system

    # -- receiving (executor thread) ------------------------------------------------------
    def on_image(self, camera, data, message_type):
        """A camera frame, still serialised: into the intake, for the pipeline to decode."""
        if self._pipeline is None:
            return  # a message taken while deactivating
        self._stats.received(camera.index)
        if not camera.wanted_outputs(self._settings):
            self._intake.unwanted(camera.index)  # nobody listens: no inference at all
            return
        self._intake.put(PendingFrame(camera.index, data, message_type))

    # -- parameters and diagnostics (executor thread) ---------------------------------------
    def _on_set_parameters(self, parameters):
        values = dict(self._values)
        for parameter in parameters:
            reason = check_value(parameter.name, parameter.value) if parameter.name in values else None
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            values[parameter.name] = parameter.value
        settings = Settings.from_values(values)
        reason = check_input_pixels(values) or (
            self.segmenter and input_size_refusal(self.segmenter, settings.input_size))
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        if (values["input_width"] > 0) != (values["input_height"] > 0):
            self.get_logger().info("input_width and input_height are used once both are > 0; "
                                   "frames run at their native size until then")
        self._values, self._settings = values, settings
        return SetParametersResult(successful=True)

    def _warn_on_name_clash(self):
        """Warn (once) when another node with our name is on the graph: its outputs would mix
        with ours (two launches of the same file, say)."""
        me = (self.get_name(), self.get_namespace())
        if not self._name_clash_warned and self.get_node_names_and_namespaces().count(me) > 1:
            self._name_clash_warned = True
            self.get_logger().warning(f"another node named {self.get_fully_qualified_name()} is running: "
                                      f"both publish the same topics; rename one (__node:=...)")

    def _publish_diagnostics(self):
        self._warn_on_name_clash()
        name, seg = self.get_fully_qualified_name(), self.segmenter
        if seg is None:  # unconfigured: only the state
            self._diagnostics.publish(unconfigured_report(name, self.state))
            return
        dropped = self._intake.dropped() if self._pipeline else None
        self._diagnostics.publish(self._stats.report(
            name, dropped, str(seg.device), seg.precision, seg.arch, seg.backend, self.state,
            self._trial.note if self._trial else str(seg.streams), seg.graph_status,
            self._failover.last_switch if self._pipeline else ""))

    def destroy_node(self):
        self._stop_pipeline()  # the threads end first; rclpy destroys the entities
        return super().destroy_node()


def main(args=None):
    """Console script ``segmentation_node``; returns the exit code (0 on SIGINT/SIGTERM at any
    moment and after the shutdown transition, 1 with one FATAL line for a start-up error)."""
    # Set first: torch is imported later (while the model loads), so a signal then is handled
    # too; rclpy's own handlers would shut the context down under the inference thread's feet.
    stop = stop_event()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node, code = None, 0
    try:
        executor = SingleThreadedExecutor()
        node = SegmentationNode()
        if stop.is_set():
            return 0  # signalled while the model loaded
        executor.add_node(node)
        while not stop.is_set() and not node.finished.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (StartupError, ParameterException) as exc:  # bad parameters: say which, no traceback
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {exc}")
        code = 1
    finally:
        if node is not None:
            node.destroy_node()  # joins the inference thread first
        rclpy.try_shutdown()
        ignore_signals()
    return code


if __name__ == "__main__":
    sys.exit(main())
