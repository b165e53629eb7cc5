"""The choice lists every layer shares, defined once (pure Python: no torch, no ROS, so the
launch files and the parameter table can import them cheaply)."""

# Model architectures, each with its builder in refinenet_ros.models (module:function, imported
# only there): the Light-Weight RefineNets, then the seed architectures, heavier, for comparison.
ARCH_BUILDERS = {
    "mbv2": "lightweight_refinenet:mbv2_lw",
    "rf_lw50": "lightweight_refinenet:rf_lw50",
    "rf_lw101": "lightweight_refinenet:rf_lw101",
    "rf_lw152": "lightweight_refinenet:rf_lw152",
    "refinenet50": "refinenet:refinenet50",
    "refinenet101": "refinenet:refinenet101",
    "refinenet152": "refinenet:refinenet152",
    "gcn50": "gcn:gcn50",
    "gcn101": "gcn:gcn101",
    "gcn152": "gcn:gcn152",
}
ARCHS = tuple(ARCH_BUILDERS)
# The input normalisation every model of this package trains with (ImageNet's RGB mean and std),
# here so that model descriptions can state it without importing torch.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Inference backends of the engine; "auto": the fastest installed one, measured (engine/planning/plan.py).
BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
# Numeric precisions; "auto": int8 where an int8 model exists, else fp16 on CUDA, fp32 or measured bf16 on a CPU.
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
# Size of the published images: each input image's own size, or the network input size.
OUTPUT_RESOLUTIONS = ("input", "network")
# Subscription QoS of the node: REP-2003 sensor data (best effort) or reliable.
QOS_PROFILES = ("sensor_data", "reliable")
# image_transport's names: sensor_msgs/Image on <topic>, CompressedImage on <topic>/compressed.
TRANSPORTS = ("raw", "compressed")
# A lone frame gone stale in the intake: wait for the next frame of its camera and segment that
# (always), segment it (never), or whichever gives younger labels on the live cameras (auto).
WAIT_FOR_NEXT_FRAME = ("auto", "always", "never")
# QoS of the node's outputs: reliable (RViz, Nav2) or best effort (bandwidth-limited links).
OUTPUT_QOS_PROFILES = ("reliable", "best_effort")
