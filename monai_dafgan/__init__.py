"""DAFF-GAN synthetic paired data for nuclei segmentation in H&E histopathology, the MONAI way.

Subpackages (each imports only downward):

- :mod:`monai_dafgan.data`: CoNSeP and generic readers, type grouping, sliding-window crops, generator training
  pairs, a procedural toy dataset. Samples follow the data contract in :mod:`monai_dafgan.data.io`.
- :mod:`monai_dafgan.metrics`: Dice, AJI, AJI+, DQ/SQ/PQ, detection and per-type F1 (HoVer-Net definitions).
- :mod:`monai_dafgan.points`: stage 1, the centroid library, random point-set transforms, point-map encoding.
- :mod:`monai_dafgan.networks` and :mod:`monai_dafgan.losses`: DAFF-GAN (pix2pixHD + criss-cross attention + long
  skip) generators, the multi-scale discriminator, GAN and feature-matching losses.
- :mod:`monai_dafgan.engines`: the conditional GAN trainer and its handlers.
- :mod:`monai_dafgan.synthesis`: the three-stage synthesizer, ``SyntheticNucleiDataset`` and on-the-fly mixing.
- :mod:`monai_dafgan.segmentation`: the HoVer-Net recipe the paper's study trains (training transforms without
  torchvision, local weight files, whole-tile inference and post-processing, evaluation with this package's
  metrics, the Table I layout and paired comparisons).
- :mod:`monai_dafgan.study`: the Table I study as a protocol that drives the bundles (``python -m monai_dafgan
  table1``).
- :mod:`monai_dafgan.visualize`: pictures (overlays, grids, loss curves).

The MONAI bundles live in ``bundles/``; ``python -m monai_dafgan`` is the command line.
"""

__version__ = "0.1.0"
