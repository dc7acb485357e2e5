from __future__ import annotations

import pytest

from monai_dafgan.utils import to_bool


@pytest.mark.parametrize("value, expected", [(True, True), (False, False), (0, False), (1, True), ("false", False), ("False", False), ("TRUE", True), ("yes", True), ("no", False), (" 0 ", False), ("1", True)])
def test_to_bool(value, expected):
    assert to_bool(value) is expected


def test_to_bool_rejects_other_words():
    with pytest.raises(ValueError, match="not a true/false flag: 'maybe'"):
        to_bool("maybe")
