"""Segmentation metrics from a confusion matrix (rows: ground truth, columns: prediction)."""
import numpy as np
import torch


def confusion_matrix(labels, predictions, num_classes, ignore_index=None):
    """Accumulate a ``num_classes x num_classes`` int64 confusion matrix (torch or numpy in)."""
    labels = torch.as_tensor(labels).reshape(-1).long()
    predictions = torch.as_tensor(predictions).reshape(-1).long().to(labels.device)
    valid = (labels >= 0) & (labels < num_classes)
    if ignore_index is not None:
        valid &= labels != ignore_index
    index = labels[valid] * num_classes + predictions[valid]
    counts = torch.bincount(index, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).cpu().numpy().astype(np.int64)


def scores(confusion):
    """Per-class IoU, mean IoU over classes present in ground truth or prediction, pixel
    accuracy and mean class accuracy."""
    confusion = np.asarray(confusion, dtype=np.float64)
    true_positive = np.diag(confusion)
    gt_total, pred_total = confusion.sum(1), confusion.sum(0)
    union = gt_total + pred_total - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, true_positive / union, np.nan)
        class_acc = np.where(gt_total > 0, true_positive / gt_total, np.nan)
    total = confusion.sum()
    return {
        "iou": iou.tolist(),
        "miou": float(np.nanmean(iou)) if np.any(union > 0) else float("nan"),
        "pixel_accuracy": float(true_positive.sum() / total) if total else float("nan"),
        "mean_class_accuracy": float(np.nanmean(class_acc)) if np.any(gt_total > 0) else float("nan"),
    }
