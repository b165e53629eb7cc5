"""The choice lists every layer shares, defined once (pure Python: no torch, no ROS, so the
launch files and the parameter table can import them cheaply)."""

# Model architectures: the Light-Weight RefineNets, then the seed architectures.
ARCHS = ("mbv2", "rf_lw50", "rf_lw101", "rf_lw152",
         "refinenet50", "refinenet101", "refinenet152", "gcn50", "gcn101", "gcn152")
# Inference backends of the engine; "auto": the fastest installed one, measured (engine/plan.py).
BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
# Numeric precisions; "auto": int8 where an int8 model exists, else fp16 on CUDA, fp32 or measured bf16 on a CPU.
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
# Size of the published images: each input image's own size, or the network input size.
OUTPUT_RESOLUTIONS = ("input", "network")
# Subscription QoS of the node: REP-2003 sensor data (best effort) or reliable.
QOS_PROFILES = ("sensor_data", "reliable")
# image_transport's names: sensor_msgs/Image on <topic>, CompressedImage on <topic>/compressed.
TRANSPORTS = ("raw", "compressed")
# QoS of the node's outputs: reliable (RViz, Nav2) or best effort (bandwidth-limited links).
OUTPUT_QOS_PROFILES = ("reliable", "best_effort")
