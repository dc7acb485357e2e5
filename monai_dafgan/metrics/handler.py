""":class:`NucleiMetric` in a MONAI workflow: an ignite metric handler that also keeps each image's scores."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from monai.handlers import IgniteMetricHandler, from_engine

from monai_dafgan.metrics.cumulative import NucleiMetric
from monai_dafgan.metrics.detection import Pairing
from monai_dafgan.metrics.nuclei import COUNT_KEYS, INSTANCE_METRICS, typed_metric_names

__all__ = ["NucleiMetricHandler"]


class NucleiMetricHandler(IgniteMetricHandler):
    """Every nuclei metric of a MONAI evaluator's images, computed once per image by :class:`NucleiMetric`.

    At the end of a run each metric lands in ``engine.state.metrics`` under its own name (``pq``, ``aji``,
    ``f1_detection``, ...), so any one of them can be the evaluator's key metric: attach the handler as
    ``key_val_metric={"pq": handler}`` (or ``aji``, ...). :attr:`images` holds one row per image, in the order the
    evaluator saw them: ``name`` (the batch's ``name`` entry, else ``image_<n>``) and that image's
    :func:`~monai_dafgan.metrics.nuclei_metrics` dict.

    Args:
        num_types: number of nucleus types.
        match_iou: IoU threshold of the PQ matching (strict).
        radius: centroid pairing radius in pixels (inclusive).
        pairing: centroid pairing scheme (see :class:`NucleiMetric`).
        metric_names: the metrics reported; default all of them: instance metrics, counts and the typed metrics
            of ``num_types`` types (which need the type channel).
        output_transform: engine output -> ``(y_pred, y)``, each a batch or list of (2, H, W) (instance ids,
            types) maps; default the ``nuclei`` and ``label`` entries of a decollated output.
    """

    def __init__(
        self,
        num_types: int = 4,
        match_iou: float = 0.5,
        radius: float = 12.0,
        pairing: Pairing = "hovernet",
        metric_names: Sequence[str] | None = None,
        output_transform: Callable = from_engine(["nuclei", "label"]),
    ) -> None:
        names = tuple(metric_names or INSTANCE_METRICS + COUNT_KEYS + typed_metric_names(num_types))
        metric = NucleiMetric(metric_name=names, num_types=num_types, match_iou=match_iou, radius=radius,
                              pairing=pairing)  # fmt: skip
        self.images: list[dict] = []
        self._iteration_scores: list[dict] = []
        super().__init__(metric_fn=metric, output_transform=output_transform)

    def reset(self) -> None:
        super().reset()
        self.images = []

    def update(self, output) -> None:
        super().update(output)
        self._iteration_scores.extend(self.metric_fn.last_scores)

    def iteration_completed(self, engine) -> None:
        # ignite may unroll an iteration's output into one update per image: gather the scores of all of them
        self._iteration_scores = []
        super().iteration_completed(engine)
        batch = engine.state.batch
        if isinstance(batch, Mapping):  # not decollated: one list of names for the batch
            names = list(batch.get("name") or [])
        else:
            names = [item.get("name") if isinstance(item, Mapping) else None for item in batch or []]
        for index, scores in enumerate(self._iteration_scores):
            name = names[index] if index < len(names) and names[index] is not None else f"image_{len(self.images)}"
            self.images.append({"name": str(name), **scores})

    def completed(self, engine, name: str) -> None:
        result = self.compute()
        scores = result if isinstance(result, dict) else {self.metric_fn.metric_name[0]: result}
        engine.state.metrics.update(scores)
        if name not in scores:
            engine.state.metrics[name] = scores
