import numpy as np
import pytest
import torch

from data_loaders.windows import Windows, time_split, valid_window_ends, zscore_windows
from hfformer.loader import WindowDataset, make_loader

torch.set_num_threads(1)


def random_set(n=2000, f=6, h=5, seed=0):
    rng = np.random.default_rng(seed)
    x = (
        rng.standard_normal((n, f)) * rng.uniform(0.001, 50, f) + rng.uniform(-100, 100, f)
    ).astype(np.float32)
    y = rng.standard_normal((n, h)).astype(np.float32)
    y[n - h :] = np.nan  # like make_targets: no target past the data
    return x, y


def test_zscore_is_the_papers_formula_with_population_std():
    w = np.array(
        [[1.0, 10.0], [2.0, 10.0], [4.0, 10.0], [5.0, 10.0]], dtype=np.float32
    )  # (T=4, F=2)
    z = zscore_windows(w)
    # Column 0: mean 3, population std sqrt(2.5); column 1 is constant -> zeros (std 0 + 0.01).
    np.testing.assert_allclose(
        z[:, 0], (np.array([1, 2, 4, 5]) - 3) / (np.sqrt(2.5) + 0.01), rtol=1e-6
    )
    np.testing.assert_array_equal(z[:, 1], 0)
    assert z.dtype == np.float32 and z.shape == (4, 2)


def test_item_is_the_zscored_view_of_its_window_and_its_target_row():
    x, y = random_set()
    ends = valid_window_ends(np.ones(len(x), dtype=bool), window=50, max_h=5)
    ds = Windows(x, y, ends, window=50)
    assert len(ds) == len(x) - 50 - 5 + 1
    for i in (0, 17, len(ds) - 1):
        e = ends[i]
        view = ds.window_view(i)
        assert np.shares_memory(view, x) and view.shape == (50, 6)
        raw = x[e - 49 : e + 1].astype(np.float64)
        xi, yi = ds.item(i)
        assert xi.shape == (50, 6) and xi.dtype == np.float32 and yi.shape == (5,)
        np.testing.assert_allclose(xi, (raw - raw.mean(0)) / (raw.std(0) + 0.01), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(yi, y[e])
        assert not np.shares_memory(yi, y)
    assert ds.x is x and ds.y is y  # the dataset holds the arrays, no copies


def test_batch_equals_per_item_results():
    x, y = random_set()
    ds = Windows(x, y, valid_window_ends(np.ones(len(x), dtype=bool), 100, 5), window=100)
    idx = np.array([5, 0, 999, 5, 1500])
    xb, yb = ds.batch(idx)
    assert xb.shape == (5, 100, 6) and yb.shape == (5, 5) and xb.dtype == yb.dtype == np.float32
    for b, i in enumerate(idx):
        xi, yi = ds.item(int(i))
        np.testing.assert_allclose(xb[b], xi, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(yb[b], yi)


def test_the_torch_dataset_serves_the_same_windows_as_tensors():
    x, y = random_set()
    ends = valid_window_ends(np.ones(len(x), dtype=bool), 30, 5)
    windows, ds = Windows(x, y, ends, window=30), WindowDataset(x, y, ends, window=30)
    idx = np.array([3, 0, 700])
    xb, yb = ds.get_batch(idx)
    assert xb.dtype == yb.dtype == torch.float32 and torch.equal(ds[idx][0], xb)
    np.testing.assert_array_equal(xb.numpy(), windows.batch(idx)[0])
    np.testing.assert_array_equal(yb.numpy(), windows.batch(idx)[1])
    xi, yi = ds[7]
    np.testing.assert_array_equal(xi.numpy(), windows.item(7)[0])
    np.testing.assert_array_equal(yi.numpy(), windows.item(7)[1])


def test_loader_serves_every_window_once_in_batches():
    x, y = random_set(n=700)
    ds = WindowDataset(x, y, valid_window_ends(np.ones(len(x), dtype=bool), 20, 5), window=20)
    seen = []
    for xb, yb in make_loader(ds, batch_size=64, shuffle=True, seed=3):
        assert xb.shape[1:] == (20, 6) and yb.shape[1:] == (5,) and xb.shape[0] == yb.shape[0] <= 64
        seen.append(yb.numpy())
    got = np.concatenate(seen)
    assert got.shape == (len(ds), 5)
    np.testing.assert_array_equal(np.sort(got[:, 0]), np.sort(y[ds.ends, 0]))
    first = next(iter(make_loader(ds, batch_size=64, shuffle=False)))
    np.testing.assert_array_equal(first[1].numpy(), y[ds.ends[:64]])


def test_valid_window_ends_match_brute_force():
    rng = np.random.default_rng(1)
    valid = rng.random(3000) > 0.02
    window, max_h = 30, 7
    ends = valid_window_ends(valid, window, max_h)
    brute = [
        t
        for t in range(len(valid))
        if t - window + 1 >= 0
        and t + max_h < len(valid)
        and valid[t - window + 1 : t + max_h + 1].all()
    ]
    np.testing.assert_array_equal(ends, brute)
    assert len(ends) > 0 and ends.dtype == np.int64


def test_dataset_rejects_ends_without_targets_or_window():
    x, y = random_set(n=300, h=5)
    with pytest.raises(ValueError, match="NaN targets"):
        Windows(x, y, np.array([299]), window=10)
    with pytest.raises(ValueError, match="window ends"):
        Windows(x, y, np.array([5]), window=10)


@pytest.mark.parametrize("window,max_h", [(100, 30), (10, 3)])
def test_time_split_has_no_leakage(window, max_h):
    rng = np.random.default_rng(2)
    n = 5000
    valid = rng.random(n) > 0.005
    ends = valid_window_ends(valid, window, max_h)

    def rows(
        part, lo, hi
    ):  # all rows a part's samples read: inputs (lo=1-window) or targets (1..max_h)
        return set((part[:, None] + np.arange(lo, hi + 1)).ravel().tolist())

    s = time_split(ends, n, gap=max_h)
    parts = [s.train, s.val, s.test]
    assert all(len(p) > 0 for p in parts)
    assert sum(map(len, parts)) > 0.9 * len(ends)
    for early, late in [(s.train, s.val), (s.train, s.test), (s.val, s.test)]:
        assert late.min() - early.max() > max_h
        # No target row of an earlier part is a window end or target row of a later part.
        assert not rows(early, 1, max_h) & rows(late, 0, max_h)

    d = time_split(ends, n, gap=max_h + window - 1)
    for early, late in [(d.train, d.val), (d.val, d.test)]:
        # Fully disjoint: no row read by one part (input or target) is read by another.
        assert not rows(early, 1 - window, max_h) & rows(late, 1 - window, max_h)
    assert abs(len(d.train) / len(ends) - 0.7) < 0.05 and np.isin(d.test, ends).all()


def test_time_split_rejects_bad_fractions():
    with pytest.raises(ValueError):
        time_split(np.arange(100), 100, (0.5, 0.2, 0.2), gap=5)
    with pytest.raises(ValueError):
        time_split(np.arange(100), 100, gap=-1)


def test_zscore_mask_passes_the_other_features_through():
    x, y = random_set(n=300, f=4)
    mask = np.array([True, False, True, False])
    w = x[:50]
    z = zscore_windows(w, mask=mask)
    np.testing.assert_array_equal(z[:, ~mask], w[:, ~mask])
    np.testing.assert_array_equal(z[:, mask], zscore_windows(w)[:, mask])
    ends = np.arange(49, 290, 7)
    ds = Windows(x, y, ends, 50, zscore=mask)
    xb, _ = ds.batch(np.arange(3))
    np.testing.assert_array_equal(xb[2], ds.item(2)[0])
    np.testing.assert_array_equal(xb[1], zscore_windows(x[ends[1] - 49 : ends[1] + 1], mask=mask))
    all_on = Windows(x, y, ends, 50, zscore=np.ones(4, bool)).batch(np.arange(3))[0]
    plain = Windows(x, y, ends, 50).batch(np.arange(3))[0]
    np.testing.assert_array_equal(all_on, plain)
    with pytest.raises(ValueError, match="bool mask of the 4 features"):
        Windows(x, y, ends, 50, zscore=np.ones(3, bool))
