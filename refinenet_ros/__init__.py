"""refinenet_ros: Light-Weight RefineNet semantic segmentation for ROS 2."""
