from __future__ import annotations

import pytest

from monai_dafgan.utils import to_bool


@pytest.mark.parametrize("value, expected", [(True, True), (False, False), (0, False), (1, True), ("false", False), ("False", False), ("TRUE", True), ("yes", True), ("no", False), (" 0 ", False), ("1", True)])
def test_to_bool(value, expected):
    assert to_bool(value) is expected


def test_to_bool_rejects_other_words():
    with pytest.raises(ValueError, match="not a true/false flag: 'maybe'"):
        to_bool("maybe")


def test_size_pair_takes_an_int_or_a_pair():
    import numpy as np

    from monai_dafgan.utils import size_pair

    assert size_pair(5) == (5, 5) and size_pair(np.int64(4)) == (4, 4)
    assert size_pair((3, 7)) == (3, 7) and size_pair(np.array([2, 9])) == (2, 9)
    for bad in ((1, 2, 3), "ab", None, True, (1.5,)):
        with pytest.raises(ValueError, match="window must be an int or"):
            size_pair(bad, "window")


def test_unwrap_returns_the_module_inside_a_wrapper():
    import torch

    from monai_dafgan.utils import unwrap

    network = torch.nn.Linear(2, 2)
    assert unwrap(network) is network and unwrap(torch.nn.DataParallel(network)) is network
