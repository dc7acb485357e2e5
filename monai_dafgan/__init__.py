"""DAFF-GAN synthetic paired data for nuclei segmentation in H&E histopathology, the MONAI way.

Subpackages (each imports only downward):

- :mod:`monai_dafgan.data`: CoNSeP and generic readers, type grouping, sliding-window crops, a toy dataset.
- :mod:`monai_dafgan.metrics`: Dice, AJI, AJI+, DQ/SQ/PQ, detection and per-type F1 (HoVer-Net definitions).
"""

__version__ = "0.1.0"
