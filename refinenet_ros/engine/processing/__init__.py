"""Running frames: request checks, the input side (preprocess), the output side (postprocess), and the two paths a batch takes through a network."""
