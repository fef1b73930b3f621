"""check_placement: dropout feeding BatchNorm (static and probe), all-zero dropout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dropkit.training import PlacementWarning, check_placement


def test_sequential_dropout_then_batchnorm_flagged() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.BatchNorm1d(8), nn.ReLU())
    with pytest.warns(
        PlacementWarning, match=r"dropout '1' feeds BatchNorm '2' directly.*variance shift"
    ):
        found = check_placement(net)
    assert len(found) == 1 and isinstance(found[0], PlacementWarning)


def test_nested_sequential_flattened() -> None:
    net = nn.Sequential(
        nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2)), nn.Sequential(nn.BatchNorm1d(8))
    )
    found = check_placement(net, warn=False)
    assert [str(w).split(" directly")[0] for w in found] == [
        "check_placement: dropout '0.1' feeds BatchNorm '1.0'"
    ]


def test_good_placement_is_silent() -> None:
    net = nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 2)
    )
    assert check_placement(net, torch.randn(3, 4)) == []


class Custom(nn.Module):
    """Dropout -> BatchNorm hidden in forward code, not in a Sequential."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 8)
        self.bn = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(self.drop(self.fc(x))))


class Parallel(Custom):
    """Dropout and BatchNorm read the same tensor: not a dropout -> BN link."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        return self.head(self.bn(h) + self.drop(h))


def test_probe_finds_link_in_forward_and_restores_state(seed: int) -> None:
    net = Custom()
    net.train()
    net.bn.running_mean.fill_(0.25)
    stats = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(5, 4)
    rng = torch.get_rng_state()
    assert check_placement(net, warn=False) == []  # static walk cannot see it
    found = check_placement(net, x, warn=False)
    assert len(found) == 1 and "dropout 'drop' feeds BatchNorm 'bn'" in str(found[0])
    assert all(m.training for m in net.modules())
    assert all(torch.equal(v, stats[k]) for k, v in net.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)


def test_probe_no_false_positive_for_parallel_reads() -> None:
    assert check_placement(Parallel().eval(), torch.randn(5, 4), warn=False) == []


def test_probe_restores_state_after_a_failing_forward() -> None:
    net = Custom().train()
    with pytest.raises(RuntimeError):
        check_placement(net, torch.randn(5, 3), warn=False)  # wrong width
    assert all(m.training for m in net.modules())


def test_all_zero_dropout_in_training_mode() -> None:
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.0), nn.ReLU(), nn.Dropout(0.0))
    with pytest.warns(PlacementWarning, match=r"training mode but every dropout rate is 0"):
        check_placement(net)
    assert check_placement(net.eval(), warn=False) == []  # evaluating: fine
    net.train()[1].p = 0.1
    assert check_placement(net, warn=False) == []
    assert check_placement(nn.Linear(2, 2), warn=False) == []  # no dropout at all: nothing to say


def test_type_error() -> None:
    with pytest.raises(TypeError, match="check_placement: expected model to be a torch.nn.Module"):
        check_placement("net")  # type: ignore[arg-type]
