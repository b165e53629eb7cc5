"""The ROS 2 layer: the segmentation node and image_source (rclpy), their parameters,
message conversions, frame batching, diagnostics and launch-file helpers."""
