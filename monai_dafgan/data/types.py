"""Nucleus types: the four merged CoNSeP classes every part of the package uses.

CoNSeP annotates seven raw classes; HoVer-Net (and the DAFF-GAN paper) merge them into four:

=====  ==============================  =========================================
merged name                            raw CoNSeP classes
=====  ==============================  =========================================
0      background                      0
1      other (miscellaneous)           1
2      inflammatory                    2
3      epithelial                      3 healthy + 4 dysplastic/malignant
4      spindle-shaped                  5 fibroblast + 6 muscle + 7 endothelial
=====  ==============================  =========================================
"""

from __future__ import annotations

from typing import Literal

import numpy as np

NUM_TYPES = 4
TYPE_NAMES: dict[int, str] = {1: "other", 2: "inflammatory", 3: "epithelial", 4: "spindle"}
#: Display colours (RGB) as in the DAFF-GAN paper's point maps.
TYPE_COLORS: dict[int, tuple[int, int, int]] = {
    1: (230, 25, 25),  # red: other
    2: (255, 220, 0),  # yellow: inflammatory
    3: (20, 190, 40),  # green: epithelial
    4: (30, 80, 255),  # blue: spindle-shaped
}
RAW_CONSEP_MAX_TYPE = 7
#: Lookup table raw CoNSeP class (index) -> merged class (value).
RAW_TO_MERGED = np.array([0, 1, 2, 3, 3, 4, 4, 4], dtype=np.int32)

TypeScheme = Literal["auto", "consep_raw", "merged"]


def resolve_type_scheme(type_scheme: TypeScheme, max_type: int) -> Literal["consep_raw", "merged"]:
    """Decide how type ids are to be read.

    ``"auto"`` reads ids as raw CoNSeP when ``max_type`` exceeds 4, else as already merged. Raw and merged ids
    0..4 cannot be told apart (raw 4 is epithelial, merged 4 is spindle), so the decision is only sound over a
    whole dataset: a raw dataset has tiles without classes 5..7. The dataset readers
    (:func:`monai_dafgan.data.dataset_type_scheme`) pass the largest id of all label files; a single file or array
    decided alone is read as merged when it holds only 0..4, so pass ``"consep_raw"`` for raw data read file by file.
    """
    if type_scheme == "auto":
        return "consep_raw" if max_type > NUM_TYPES else "merged"
    if type_scheme not in ("consep_raw", "merged"):
        raise ValueError(f"type_scheme must be 'auto', 'consep_raw' or 'merged', got {type_scheme!r}.")
    return type_scheme


def check_type_ids(types: np.ndarray, scheme: Literal["consep_raw", "merged"]) -> None:
    """Raise ``ValueError`` naming the first id of ``types`` outside 0..7 (``"consep_raw"``) or 0..4 (``"merged"``)."""
    types = np.asarray(types)
    if types.size == 0:
        return
    lo, hi = int(types.min()), int(types.max())
    top = RAW_CONSEP_MAX_TYPE if scheme == "consep_raw" else NUM_TYPES
    if lo < 0 or hi > top:
        bad = lo if lo < 0 else hi
        raise ValueError(f"type id {bad} is out of range 0..{top} for {scheme} types.")


def require_type_range(values, num_types: int, name: str) -> None:
    """Raise ``ValueError`` when ``values`` (type ids: a map or one per nucleus) fall outside 0..``num_types``,
    naming ``name`` and the range found; the one check of type ids that are already merged."""
    values = np.asarray(values)
    if values.size and (values.min() < 0 or values.max() > num_types):
        raise ValueError(f"{name} must lie in 0..{num_types}, got {values.min()}..{values.max()}.")


def merge_types(types: np.ndarray, type_scheme: TypeScheme = "auto") -> np.ndarray:
    """Map type ids to the merged 0..4 classes.

    Args:
        types: integer array of any shape (a type map or per-instance types).
        type_scheme: ``"consep_raw"`` (0..7, merged 3,4->3 and 5,6,7->4), ``"merged"`` (0..4, unchanged) or
            ``"auto"``, decided from this array alone (see :func:`resolve_type_scheme`).

    Returns:
        int32 array of the same shape with values in 0..4.

    Raises:
        ValueError: when an id is outside the range of the scheme.
    """
    types = np.asarray(types)
    if types.size == 0:
        return types.astype(np.int32)
    scheme = resolve_type_scheme(type_scheme, int(types.max()))
    check_type_ids(types, scheme)
    if scheme == "merged":
        return types.astype(np.int32)
    return RAW_TO_MERGED[types]
