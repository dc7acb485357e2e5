"""MONAI cumulative metric over batches of images: :class:`NucleiMetric`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric
from monai.utils import ensure_tuple

from monai_dafgan.metrics.detection import DetectionCounts, Pairing, check_radius
from monai_dafgan.metrics.nuclei import COUNT_KEYS, INSTANCE_METRICS, evaluate_nuclei, typed_metric_names

__all__ = ["NucleiMetric"]


class NucleiMetric(CumulativeIterationMetric):
    """HoVer-Net nuclei metrics accumulated over a dataset, as a MONAI cumulative metric.

    Each call computes the metrics of every image of the batch with :func:`monai_dafgan.metrics.evaluate_nuclei`
    (the single implementation) and buffers them; :meth:`aggregate` reduces the buffer with HoVer-Net's conventions:

    - instance metrics (``dice``, ``aji``, ``aji_plus``, ``dq``, ``sq``, ``pq``) are the **mean over images**
      (``run_nuclei_inst_stat``). ``pq_type_{t}`` is the mean over the images where type t occurs in the ground
      truth or the prediction (1.0 if it never occurs), so that images without that type do not count as perfect.
    - detection and classification scores (``f1_detection``, ``accuracy_type``, ``f1_type_{t}``) come from the
      centroid pairing counts **pooled over all images** (``run_nuclei_type_stat``), not from a mean of per-image
      scores.
    - counts (``num_true``, ``num_pred``, ``tp``, ``fp``, ``fn``) are summed over images.

    Example:

    .. code-block:: python

        metric = NucleiMetric(metric_name=("pq", "aji", "f1_detection"))
        for batch in loader:
            metric(y_pred=outputs, y=batch["label"])  # B x 2 x H x W: instance ids, types
        print(metric.aggregate())  # {"pq": ..., "aji": ..., "f1_detection": ...}
        metric.reset()

    With a single ``metric_name``, :meth:`aggregate` returns one float, which makes the metric usable as the key
    metric of a MONAI evaluator through ``monai.handlers.IgniteMetricHandler``. With several names it returns a
    dict, which ignite spreads over ``engine.state.metrics`` (one entry per name).

    Args:
        metric_name: one name or a sequence of names among ``dice``, ``aji``, ``aji_plus``, ``dq`` (MONAI's ``rq``),
            ``sq``, ``pq``, the counts, and, when types are given, ``f1_detection``, ``accuracy_type``,
            ``f1_type_{t}`` and ``pq_type_{t}`` for t in 1..num_types.
        num_types: number of nucleus types T.
        match_iou: IoU threshold of the PQ matching (strict).
        radius: centroid pairing radius in pixels (inclusive), finite and > 0.
        pairing: centroid pairing scheme, ``"hovernet"`` or ``"within_radius"``.
    """

    def __init__(
        self,
        metric_name: Sequence[str] | str = INSTANCE_METRICS,
        num_types: int = 4,
        match_iou: float = 0.5,
        radius: float = 12.0,
        pairing: Pairing = "hovernet",
    ) -> None:
        super().__init__()
        self.num_types = num_types
        self.match_iou = match_iou
        self.radius = check_radius(radius)
        self.pairing = pairing
        self.metric_name = tuple(ensure_tuple(metric_name))
        typed = typed_metric_names(num_types)
        unknown = [name for name in self.metric_name if name not in INSTANCE_METRICS + COUNT_KEYS + typed]
        if unknown or not self.metric_name:
            raise ValueError(f"unknown metric names {unknown}; choose from {INSTANCE_METRICS + COUNT_KEYS + typed}.")
        self.needs_types = any(name in typed for name in self.metric_name)
        #: the :func:`~monai_dafgan.metrics.nuclei_metrics` dict of each image of the last call, in order (per-image
        #: reports read it instead of computing the metrics a second time)
        self.last_scores: list[dict[str, float]] = []
        # a buffer row per image: the scores averaged over images, the summed counts, the pooled detection counts
        pq_type_names = tuple(f"pq_type_{t}" for t in range(1, num_types + 1))
        self._mean_names = INSTANCE_METRICS + (pq_type_names if self.needs_types else ())

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """
        Args:
            y_pred: B x C x H x W prediction, channel 0 instance ids (0 = background), channel 1 (if C == 2) the
                type map 0..num_types. Integer, or floating point holding integers.
            y: ground truth of the same shape and layout.

        Returns:
            B x N float64 tensor, one row of per-image values per image (see :meth:`aggregate`).

        Raises:
            ValueError: when shapes differ, are not 4-D, C is not 1 or 2, or types are needed and C == 1.
        """
        if y is None or y_pred.shape != y.shape:
            y_shape = None if y is None else tuple(y.shape)
            raise ValueError(f"y_pred and y must have the same shape, got {tuple(y_pred.shape)} and {y_shape}.")
        if y_pred.ndim != 4 or y_pred.shape[1] not in (1, 2):
            raise ValueError(
                "y_pred and y must be B x C x H x W with C = 1 (instances) or 2 (instances, types), "
                f"got {tuple(y_pred.shape)}."
            )
        if self.needs_types and y_pred.shape[1] != 2:
            raise ValueError(f"metrics {self.metric_name} need a type channel: y_pred and y must be B x 2 x H x W.")
        predictions = y_pred.cpu().numpy()
        labels = y.cpu().numpy()
        rows = [self._image_row(prediction, label) for prediction, label in zip(predictions, labels)]
        return torch.as_tensor(np.stack(rows), dtype=torch.float64)

    def __call__(self, y_pred, y=None, **kwargs):  # type: ignore[override]
        # a list input reaches _compute_tensor once per image: last_scores starts here, once per call
        self.last_scores = []
        return super().__call__(y_pred, y, **kwargs)

    def _image_row(self, prediction: np.ndarray, label: np.ndarray) -> np.ndarray:
        typed = self.needs_types
        evaluation = evaluate_nuclei(
            prediction[0],
            label[0],
            prediction[1] if typed else None,
            label[1] if typed else None,
            num_types=self.num_types,
            match_iou=self.match_iou,
            radius=self.radius,
            pairing=self.pairing,
        )
        self.last_scores.append(evaluation.as_dict())
        means = [evaluation.scores[name] for name in self._mean_names]
        counts = [evaluation.scores[name] for name in COUNT_KEYS]
        if not typed:
            return np.asarray(means + counts, dtype=np.float64)
        detection = evaluation.detection
        absent = (detection.num_true_of_type() + detection.num_pred_of_type()) == 0
        means[len(INSTANCE_METRICS) :] = np.where(absent, np.nan, means[len(INSTANCE_METRICS) :]).tolist()
        return np.concatenate([means, counts, detection.to_array()]).astype(np.float64)

    def aggregate(self) -> float | dict[str, float]:  # type: ignore[override]
        """Reduce the buffered images with HoVer-Net's conventions (see the class docstring).

        Returns:
            a float when one metric name was requested, else a dict name -> float in the requested order.

        Raises:
            ValueError: when nothing has been buffered since the last :meth:`reset`.
        """
        buffer = self.get_buffer()
        if not isinstance(buffer, torch.Tensor) or buffer.numel() == 0:
            raise ValueError("NucleiMetric has no data to aggregate: call it on at least one batch first.")
        rows = buffer.cpu().numpy()
        num_means = len(self._mean_names)
        observed = ~np.isnan(rows[:, :num_means])
        means = np.where(observed, rows[:, :num_means], 0.0).sum(axis=0) / np.maximum(observed.sum(axis=0), 1)
        means[~observed.any(axis=0)] = 1.0  # a type never seen anywhere: nothing to find, nothing found
        values: dict[str, float] = dict(zip(self._mean_names, means.tolist()))
        counts = rows[:, num_means : num_means + len(COUNT_KEYS)].sum(axis=0)
        values.update({name: int(round(count)) for name, count in zip(COUNT_KEYS, counts)})
        if self.needs_types:
            pooled = DetectionCounts.from_array(np.rint(rows[:, num_means + len(COUNT_KEYS) :].sum(axis=0)))
            values.update(pooled.scores())
        result = {name: values[name] for name in self.metric_name}
        return result[self.metric_name[0]] if len(result) == 1 else result
