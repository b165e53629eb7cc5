"""The check every in-graph top class passes: exact ties go to the lowest class index, as torch's
``max(1)`` (the tensor path's rule), and labels and confidence equal the torch code's."""
import numpy as np
import torch

from refinenet_ros.engine.processing.upsample import top_class


def check_ties_go_to_the_lowest_index(run, with_confidence):
    """``run(logits, size)`` -> the graph's outputs (labels, then confidence where asked) of
    1 x 6 x 9 x 13 ``logits`` upsampled to ``size``."""
    torch.manual_seed(0)
    logits = torch.randn(1, 6, 9, 13)
    logits[:, 3] = logits[:, 1] = logits.max(1).values + 1  # exact ties at every pixel: 1 wins
    logits[:, :, :4] = torch.randn(1, 6, 4, 13)        # and ordinary pixels too
    for size in [(9, 13), (37, 50)]:
        outputs = run(logits.numpy(), size)
        labels, confidence = top_class(logits, size, with_confidence)
        np.testing.assert_array_equal(outputs[0][0], labels[0].numpy())
        if with_confidence:
            np.testing.assert_allclose(outputs[1][0], confidence[0].numpy(), rtol=1e-5)
        if size == (9, 13):
            assert (outputs[0][0][4:] == 1).all()
