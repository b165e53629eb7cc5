"""Training and evaluation tools (no ROS)."""
