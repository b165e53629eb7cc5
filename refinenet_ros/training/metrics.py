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


class ConfidenceBins:
    """Pixels per top-class confidence bin (ten of width 0.1), with how many were right when
    labels are known: the model's calibration on labelled data (a reliability table and the
    expected calibration error), or the confidence profile of unlabelled footage, which shows
    how far it is from the training domain."""

    EDGES = np.linspace(0.0, 1.0, 11)

    def __init__(self):
        self.pixels = np.zeros(10, np.int64)
        self.correct = np.zeros(10, np.int64)
        self.confidence_sum = np.zeros(10, np.float64)

    def add(self, confidence, correct=None, valid=None):
        """``confidence`` H x W in [0, 1]; ``correct`` (bool, same shape) when labels are known;
        ``valid`` masks pixels out (ignored labels)."""
        confidence = np.asarray(confidence, np.float64)
        keep = np.ones(confidence.shape, bool) if valid is None else np.asarray(valid, bool)
        values = confidence[keep]
        bins = np.clip((values * 10).astype(np.int64), 0, 9)  # 1.0 falls into the last bin
        self.pixels += np.bincount(bins, minlength=10)
        self.confidence_sum += np.bincount(bins, weights=values, minlength=10)
        if correct is not None:
            self.correct += np.bincount(bins, weights=np.asarray(correct)[keep], minlength=10).astype(np.int64)

    def summary(self, labelled):
        """JSON-ready: mean confidence, share of pixels below 0.5, and per non-empty bin its
        share of pixels (and accuracy and the expected calibration error when ``labelled``)."""
        total = max(int(self.pixels.sum()), 1)
        rows, ece = [], 0.0
        for b in np.flatnonzero(self.pixels):
            share = self.pixels[b] / total
            row = {"from": round(float(self.EDGES[b]), 1), "to": round(float(self.EDGES[b + 1]), 1),
                   "share": float(share), "mean_confidence": float(self.confidence_sum[b] / self.pixels[b])}
            if labelled:
                row["accuracy"] = float(self.correct[b] / self.pixels[b])
                ece += share * abs(row["accuracy"] - row["mean_confidence"])
            rows.append(row)
        summary = {"pixels": int(self.pixels.sum()),
                   "mean_confidence": float(self.confidence_sum.sum() / total),
                   "share_below_0.5": float(self.pixels[:5].sum() / total), "bins": rows}
        if labelled:
            summary["expected_calibration_error"] = float(ece)
        return summary
