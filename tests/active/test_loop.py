from __future__ import annotations

import pytest
import torch
from torch import nn

from dropkit.active import balanced_initial, bald, run_active_learning, top_k


def _data(generator, n):
    x = torch.randn(n, 4, generator=generator)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    return x, y


def _train(x, y, seed, calls=None):
    if calls is not None:
        calls.append((x.shape[0], seed))
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 4))
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def test_balanced_initial(generator):
    y = torch.tensor([0] * 10 + [1] * 10 + [2] * 3)
    idx = balanced_initial(y, 7, generator)
    assert idx.numel() == 7 and idx.unique().numel() == 7
    counts = torch.bincount(y[idx], minlength=3)
    assert counts.min() >= 2  # 7 // 3 = 2 per class, one extra anywhere


@pytest.mark.parametrize("acquire", ["bald", "batch_bald", "random", "max_entropy"])
def test_loop_bookkeeping(generator, acquire):
    px, py = _data(generator, 120)
    test = _data(generator, 60)
    calls = []
    res = run_active_learning(
        px,
        py,
        test,
        train_fn=lambda x, y, s: _train(x, y, s, calls),
        acquire=acquire,
        initial=8,
        acquisition_size=5,
        budget=25,
        samples=6,
        seed=3,
        pool_batch_size=37,
    )
    # 8 -> 13 -> 18 -> 23 -> 25 (last round cut to the budget)
    assert res.labels == [8, 13, 18, 23, 25]
    assert [len(a) for a in res.acquired] == [5, 5, 5, 2]
    assert [c[1] for c in calls] == [3, 4, 5, 6, 7] and [c[0] for c in calls] == res.labels
    everything = res.initial + sum(res.acquired, [])
    assert len(set(everything)) == 25  # nothing acquired twice
    assert all(0 <= a <= 1 for a in res.accuracy)
    assert res.acquisition == acquire and res.to_dict()["labels"] == res.labels


def test_first_bald_round_matches_direct_scoring(generator):
    from dropkit.uncertainty import mc_predict

    px, py = _data(generator, 90)
    test = _data(generator, 30)
    init = balanced_initial(py, 8, torch.Generator().manual_seed(0))
    res = run_active_learning(
        px,
        py,
        test,
        train_fn=_train,
        acquire="bald",
        initial=init,
        acquisition_size=4,
        budget=12,
        samples=5,
        seed=11,
        pool_batch_size=1000,  # one chunk: masks from seed 11 as in the direct call
    )
    model = _train(px[init.sort().values], py[init.sort().values], 11)
    mask = torch.ones(90, dtype=torch.bool)
    mask[init] = False
    rest = mask.nonzero().flatten()
    r = mc_predict(model, px[rest], samples=5, seed=11, progress=False)
    assert res.acquired[0] == rest[top_k(bald(r), 4)].tolist()


def test_target_accuracy_stops_early(generator):
    px, py = _data(generator, 60)
    res = run_active_learning(
        px,
        py,
        _data(generator, 30),
        train_fn=_train,
        acquire="random",
        initial=8,
        acquisition_size=4,
        budget=60,
        target_accuracy=0.0,
    )
    assert res.labels == [8] and res.acquired == []
    assert res.labels_to_reach(0.0) == 8 and res.labels_to_reach(1.01) is None


def test_loop_errors(generator):
    px, py = _data(generator, 20)
    test = _data(generator, 5)
    with pytest.raises(
        ValueError,
        match=r"^run_active_learning: expected acquire to be one of \['bald', 'batch_bald', "
        r"'margin', 'max_entropy', 'mean_std', 'random', 'variation_ratio'\], but got 'entropy'",
    ):
        run_active_learning(px, py, test, train_fn=_train, acquire="entropy")
    with pytest.raises(
        ValueError,
        match=r"^run_active_learning: expected an initial set within the budget \(10\), but got "
        r"20\.",
    ):
        run_active_learning(px, py, test, train_fn=_train, initial=20, budget=10)
    with pytest.raises(
        ValueError,
        match=r"^run_active_learning: expected pool_target of shape \(20,\) matching pool_x, "
        r"but got \(19,\)",
    ):
        run_active_learning(px, py[:19], test, train_fn=_train)
    with pytest.raises(
        ValueError, match=r"^run_active_learning: expected samples >= 2, but got 1\."
    ):
        run_active_learning(px, py, test, train_fn=_train, samples=1)


def test_pool_y_is_a_deprecated_alias_of_pool_target(generator):
    px, py = _data(generator, 20)
    test = _data(generator, 5)
    run = dict(train_fn=_train, acquire="random", initial=8, budget=8, samples=2)
    with pytest.warns(
        DeprecationWarning, match=r"^run_active_learning: the keyword pool_y= is deprecated"
    ):
        old = run_active_learning(px, pool_y=py, test=test, **run)
    new = run_active_learning(px, pool_target=py, test=test, **run)
    assert old.labels == new.labels and old.accuracy == new.accuracy
