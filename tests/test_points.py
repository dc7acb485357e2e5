"""Stage 1: point-map encoding, centroid library, point-set transforms and PointSetDataset."""

from __future__ import annotations

import numpy as np
import pytest
from monai.data import DataLoader

from monai_dafgan.data import LabelsToPointsd
from monai_dafgan.data.io import LabelFile, make_sample
from monai_dafgan.points import (
    CentroidLibrary,
    PointSetDataset,
    PointsToMapd,
    RandPointAffine,
    RandPointCombine,
    RandPointCover,
    RandPointFlip,
    RandPointFlipd,
    RandPointGenerate,
    RandPointRotate90,
    RandPointRotate90d,
    RandPointSetAugmentd,
    enforce_spacing,
    map_to_points,
    points_to_maps,
)


def _random_points(rng, n, size, integer=False):
    xy = rng.uniform(0, 1, (n, 2)) * np.array(size) - 0.5
    xy = np.clip(np.round(xy) if integer else xy, 0, np.array(size) - 1)
    return np.c_[xy, rng.integers(1, 5, n)].astype(np.float32)


@pytest.fixture(scope="module")
def library():
    """A library of 6 tiles of 300x300 with clustered, typed points (tile i is dominated by type i % 4 + 1)."""
    rng = np.random.default_rng(0)
    points, sizes = [], []
    for i in range(6):
        centres = rng.uniform(30, 270, (5, 2))
        xy = np.concatenate([c + rng.normal(0, 18, (25, 2)) for c in centres])
        xy = xy[(xy >= 0).all(1) & (xy < 300).all(1)]
        types = np.where(rng.random(len(xy)) < 0.8, i % 4 + 1, rng.integers(1, 5, len(xy)))
        p = enforce_spacing(np.c_[xy, types].astype(np.float32), 5.0)
        points.append(p)
        sizes.append((300, 300))
    return CentroidLibrary(points, sizes)


# ---- encoding ----------------------------------------------------------------------------------------------


def test_encoding_round_trip_separated_points():
    points = np.array([[10, 10, 1], [10.4, 30.6, 2], [40, 20, 3], [25, 50, 4]], np.float32)
    point_map, markers = points_to_maps(points, (64, 72), radius=3)
    assert point_map.shape == (5, 64, 72) and markers.shape == (1, 64, 72) and markers.dtype == np.int32
    np.testing.assert_array_equal(point_map.sum(0), 1.0)  # one-hot
    assert (markers > 0).sum() == 4 * 29  # four full disks of radius 3 (29 pixels each)
    decoded = map_to_points(point_map, markers)
    np.testing.assert_array_equal(decoded, np.floor(points + [0.5, 0.5, 0]))  # rounded positions, exact types
    # the marker of row k is k + 1, drawn on channel type(k)
    assert markers[0, 10, 10] == 1 and point_map[1, 10, 10] == 1 and point_map[2, 10, 31] == 1


def test_encoding_overlaps_go_to_nearest_point_and_keep_every_point():
    points = np.array([[10, 10, 1], [10, 12, 2], [0, 0, 3]], np.float32)  # disks overlap; one on the corner
    point_map, markers = points_to_maps(points, (20, 20), radius=2)
    assert markers[0, 10, 10] == 1 and markers[0, 10, 12] == 2 and markers[0, 0, 0] == 3
    assert markers[0, 10, 11] == 1  # equidistant pixel: lower row wins
    decoded = map_to_points(point_map, markers)
    np.testing.assert_array_equal(decoded[:, 2], [1, 2, 3])
    assert np.abs(decoded[:, :2] - points[:, :2]).max() <= 2


def test_encoding_empty_and_radius_zero():
    point_map, markers = points_to_maps(np.zeros((0, 3)), (8, 9))
    assert markers.max() == 0 and point_map[0].min() == 1 and map_to_points(point_map, markers).shape == (0, 3)
    point_map, markers = points_to_maps(np.array([[3, 4, 2]]), (8, 9), radius=0)
    assert (markers > 0).sum() == 1 and point_map[2, 3, 4] == 1


@pytest.mark.parametrize(
    "points, match",
    [
        (np.array([[3, 9, 1]]), "outside the 8x9 window"),
        (np.array([[-0.6, 2, 1]]), "outside"),
        (np.array([[3, 3, 5]]), "types must be integers in 1..4"),
        (np.array([[3, 3, 0]]), "types must be integers"),
        (np.array([[3, 3, 1.5]]), "types must be integers"),
        (np.array([[np.nan, 3, 1]]), "NaN"),
        (np.array([[3, 3]]), r"\(K, 3\)"),
    ],
)
def test_encoding_rejects_bad_points(points, match):
    with pytest.raises(ValueError, match=match):
        points_to_maps(points, (8, 9))


def test_points_to_mapd_takes_size_from_reference_or_spatial_size():
    inst = np.zeros((12, 14), np.int64)
    inst[2:5, 3:6] = 1
    sample = make_sample(np.zeros((12, 14, 3), np.uint8), LabelFile(inst, inst_type=np.array([3])))
    out = PointsToMapd()(LabelsToPointsd()(sample))
    assert out["point_map"].shape == (5, 12, 14) and out["point_markers"][0, 3, 4] == 1
    out = PointsToMapd()({"points": np.array([[1, 1, 2]], np.float32), "spatial_size": (6, 7)})
    assert out["point_map"].shape == (5, 6, 7)


# ---- transforms ---------------------------------------------------------------------------------------------


def test_flip_and_rotate_match_flipping_and_rotating_the_maps():
    rng = np.random.default_rng(1)
    points = _random_points(rng, 30, (40, 56), integer=True)
    point_map, _ = points_to_maps(points, (40, 56), radius=0)
    flip = RandPointFlip(prob=1.0)
    flipped, size = flip(points, (40, 56))
    assert size == (40, 56)
    np.testing.assert_array_equal(points_to_maps(flipped, size, radius=0)[0], point_map[:, ::-1, ::-1])
    for k in (1, 2, 3):
        rot = RandPointRotate90(prob=1.0, max_k=k)
        rot._do_transform, rot._k = True, k
        rotated, size = rot(points, (40, 56), randomize=False)
        assert size == ((56, 40) if k % 2 else (40, 56))
        np.testing.assert_array_equal(points_to_maps(rotated, size, radius=0)[0], np.rot90(point_map, k, axes=(1, 2)))


def test_cover_drops_only_covered_points():
    rng = np.random.default_rng(2)
    points = _random_points(rng, 200, (100, 100))
    cover = RandPointCover(prob=1.0, max_regions=2, drop_fraction=(0.0, 0.0))
    cover.set_random_state(3)
    out, _ = cover(points, (100, 100))
    boxes = cover._boxes
    inside = np.zeros(len(points), bool)
    for r0, c0, r1, c1 in boxes:
        inside |= (points[:, 0] >= r0) & (points[:, 0] < r1) & (points[:, 1] >= c0) & (points[:, 1] < c1)
    np.testing.assert_array_equal(out, points[~inside])
    fraction = RandPointCover(prob=1.0, max_regions=0, drop_fraction=(0.5, 0.5))
    fraction.set_random_state(0)
    out, _ = fraction(points, (100, 100))
    assert 70 <= len(out) <= 130  # about half of 200


def test_affine_identity_and_pure_translation():
    rng = np.random.default_rng(3)
    points = _random_points(rng, 50, (64, 64))
    fixed = dict(rotate_range=(0, 0), scale_range=(1, 1), shear_range=(0, 0))
    identity = RandPointAffine(prob=1.0, translate_range=(0, 0), **fixed)
    out, _ = identity(points, (64, 64))
    np.testing.assert_allclose(out, points, atol=1e-4)
    shift = RandPointAffine(prob=1.0, translate_range=(10, 10), min_spacing=0.0, **fixed)
    out, _ = shift(points, (64, 64))
    moved = points[(points[:, 0] + 10 < 64) & (points[:, 1] + 10 < 64)] + [10, 10, 0]
    # what the shift brings in from outside are mirror copies; every shifted original is there
    assert all(np.any(np.abs(out - m).max(1) < 1e-4) for m in moved)


def test_affine_fills_rotated_corners():
    rows, cols = np.mgrid[5:256:10, 5:256:10]  # a regular grid, 10 px apart
    points = np.c_[rows.ravel(), cols.ravel(), np.ones(rows.size)].astype(np.float32)
    rot = RandPointAffine(prob=1.0, rotate_range=(np.pi / 4, np.pi / 4), scale_range=(1, 1), shear_range=(0, 0), translate_range=(0, 0))
    out, _ = rot(points, (256, 256))
    for corner in ((out[:, 0] < 40) & (out[:, 1] < 40), (out[:, 0] > 215) & (out[:, 1] > 215)):
        assert corner.sum() >= 8  # 16 grid points per 40x40 corner; nothing would be there without mirrored fill
    assert 0.85 * len(points) < len(out) < 1.15 * len(points)
    d = np.sqrt(((out[:, None, :2] - out[None, :, :2]) ** 2).sum(-1)) + np.eye(len(out)) * 1e9
    assert d.min() >= 4.0  # mirror copies never crowd the originals


def test_generate_follows_library_statistics(library):
    gen = RandPointGenerate(library, prob=1.0)
    gen.set_random_state(0)
    stats = library.statistics((128, 128))
    counts = []
    for _ in range(30):
        out, size = gen(np.zeros((0, 3)), (128, 128))
        assert size == (128, 128) and set(np.unique(out[:, 2])) <= {1, 2, 3, 4}
        d = np.sqrt(((out[:, None, :2] - out[None, :, :2]) ** 2).sum(-1)) + np.eye(len(out)) * 1e9
        t = out[:, 2].astype(int) - 1
        assert np.all(d >= stats.min_spacing[t[:, None], t[None, :]] - 1e-3)
        counts.append(len(out))
    assert abs(np.mean(counts) - stats.type_counts.sum(1).mean()) < 0.35 * stats.type_counts.sum(1).mean()


def test_combine_keeps_a_piece_of_the_input(library):
    comb = RandPointCombine(library, prob=1.0)
    comb.set_random_state(5)
    points = library.crop(1, 10, 10, (128, 128))
    out, size = comb(points, (128, 128))
    assert size == (128, 128) and len(out) > 0
    kept = points[comb._piece(points) == comb._keep_piece]
    assert all(np.any(np.abs(out - k).max(1) < 1e-6) for k in kept)


@pytest.mark.parametrize(
    "make",
    [
        lambda lib: RandPointFlip(1.0),
        lambda lib: RandPointRotate90(1.0),
        lambda lib: RandPointCover(1.0),
        lambda lib: RandPointAffine(1.0),
        lambda lib: RandPointGenerate(lib, 1.0),
        lambda lib: RandPointCombine(lib, 1.0),
    ],
)
def test_every_transform_is_deterministic_handles_empty_sets_and_stays_inside(make, library):
    t = make(library)
    points = library.crop(2, 20, 20, (128, 128))
    results = []
    for _ in range(2):
        t.set_random_state(7)
        results.append(t(points, (128, 128)))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    out, size = results[0]
    assert out.dtype == np.float32 and out.shape[1] == 3
    assert (out[:, 0] >= 0).all() and (out[:, 0] < size[0]).all() and (out[:, 1] >= 0).all() and (out[:, 1] < size[1]).all()
    empty, _ = t(np.zeros((0, 3), np.float32), (128, 128))
    assert empty.shape[1] == 3


def test_dict_twins_match_array_transforms():
    rng = np.random.default_rng(4)
    points = _random_points(rng, 20, (32, 48))
    for array_t, dict_t in ((RandPointFlip(0.5), RandPointFlipd(0.5)), (RandPointRotate90(0.5), RandPointRotate90d(0.5))):
        array_t.set_random_state(11)
        dict_t.set_random_state(11)
        for _ in range(4):
            expected, size = array_t(points, (32, 48))
            out = dict_t({"points": points, "spatial_size": (32, 48), "other": 1})
            np.testing.assert_array_equal(out["points"], expected)
            assert out["spatial_size"] == size and out["other"] == 1


def test_composed_transform_probabilities_and_state(library):
    data = {"points": library.crop(0, 0, 0, (128, 128)), "spatial_size": (128, 128)}
    off = RandPointSetAugmentd(library, 0, 0, 0, 0, 0, 0)
    np.testing.assert_array_equal(off(data)["points"], data["points"])
    aug = RandPointSetAugmentd(library)
    outs = [aug.set_random_state(3)(data)["points"] for _ in range(2)]
    np.testing.assert_array_equal(outs[0], outs[1])
    assert any(len(aug(data)["points"]) != len(data["points"]) or not np.array_equal(aug(data)["points"], data["points"]) for _ in range(5))


def test_composed_transform_inside_monai_compose(library):
    """Compose seeds it like any child and its randomize passes over it (the steps draw when applied)."""
    from monai.transforms import Compose

    data = {"points": library.crop(0, 0, 0, (128, 128)), "spatial_size": (128, 128)}
    chain = Compose([RandPointSetAugmentd(library)])
    chain.randomize(data)
    outs = [chain.set_random_state(5)(data)["points"] for _ in range(2)]
    np.testing.assert_array_equal(outs[0], outs[1])


# ---- library and dataset ------------------------------------------------------------------------------------


def test_library_crop_window_and_persistence(library, tmp_path):
    assert len(library) == 6 and library.num_points == sum(len(p) for p in library.points)
    crop = library.crop(0, 50, 60, (100, 80))
    p = library.points[0]
    inside = (p[:, 0] >= 50) & (p[:, 0] < 150) & (p[:, 1] >= 60) & (p[:, 1] < 140)
    np.testing.assert_allclose(crop, p[inside] - [50, 60, 0])
    rng = np.random.RandomState(0)
    for _ in range(20):
        tile, top, left = library.random_window(rng, (200, 100))
        assert 0 <= top <= 100 and 0 <= left <= 200
    with pytest.raises(ValueError, match="large enough"):
        library.random_window(rng, (301, 10))
    library.save(tmp_path / "lib.npz")
    loaded = CentroidLibrary.load(tmp_path / "lib.npz")
    assert loaded.names == library.names and loaded.sizes == library.sizes
    for a, b in zip(loaded.points, library.points):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="outside the 10x10 tile"):
        CentroidLibrary([np.array([[10, 1, 1]])], [(10, 10)])
    with pytest.raises(ValueError, match="types must be integers in 1..4"):
        CentroidLibrary([np.array([[1, 1, 7]])], [(10, 10)])


def test_point_set_dataset_is_a_function_of_seed_and_index(library):
    ds = PointSetDataset(library, 6, spatial_size=96, seed=5)
    again = PointSetDataset(library, 6, spatial_size=96, seed=5)
    for i in (0, 3, 5):
        a, b = ds[i], again[i]
        np.testing.assert_array_equal(a["points"], b["points"])
        np.testing.assert_array_equal(a["point_markers"], b["point_markers"])
        np.testing.assert_allclose(map_to_points(a["point_map"], a["point_markers"])[:, 2], a["points"][:, 2])
    assert not np.array_equal(PointSetDataset(library, 6, 96, seed=6)[0]["points"], ds[0]["points"])
    # identical with worker processes, in any order
    loader = DataLoader(ds, batch_size=1, num_workers=2, collate_fn=lambda b: b[0])
    for i, item in enumerate(loader):
        np.testing.assert_array_equal(item["points"], again[i]["points"])
    assert ds[2]["point_map"].shape == (5, 96, 96)
    with pytest.raises(IndexError):
        ds[6]


def test_random_patch_takes_a_random_state_or_a_generator(library):
    for make in (np.random.RandomState, np.random.default_rng):
        a, b = (library.random_patch(make(3), (64, 80)) for _ in range(2))
        np.testing.assert_array_equal(a, b)
        assert a.shape[1] == 3 and (a[:, 0] < 64).all() and (a[:, 1] < 80).all() and (a[:, :2] >= 0).all()


def test_point_set_dataset_min_nuclei_redraws_small_sets(library):
    plain = PointSetDataset(library, 40, spatial_size=24, seed=0, draw_maps=False)
    counts = [len(plain[i]["points"]) for i in range(len(plain))]
    assert min(counts) < 3  # small windows: empty and near-empty sets, as in real data
    at_least = PointSetDataset(library, 40, spatial_size=24, seed=0, draw_maps=False, min_nuclei=3)
    for i, count in enumerate(counts):
        points = at_least[i]["points"]
        assert len(points) >= 3
        if count >= 3:  # a first draw that qualifies is kept: the same item as without the option
            np.testing.assert_array_equal(points, plain[i]["points"])
    with pytest.raises(ValueError, match="min_nuclei=10000"):
        PointSetDataset(library, 1, spatial_size=24, min_nuclei=10000, draw_maps=False)[0]
