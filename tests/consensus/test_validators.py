"""Validator sets: thresholds by power, weighted round-robin proposers."""

from __future__ import annotations

from collections import Counter

import pytest

from consensus.validators import Validator, ValidatorSet
from ledger.errors import UsageError
from tests.consensus.helpers import signers, valset


@pytest.mark.parametrize(("n", "quorum", "weak"), [(1, 1, 1), (4, 3, 2), (7, 5, 3), (10, 7, 4)])
def test_equal_power_thresholds(n: int, quorum: int, weak: int) -> None:
    vals = valset(signers(n))
    assert (vals.quorum, vals.weak_quorum) == (quorum, weak)


def test_weighted_thresholds_are_strictly_above_two_thirds_and_one_third() -> None:
    vals = valset(signers(4), [3, 2, 1, 3])
    assert vals.total_power == 9
    assert vals.quorum == 7 and vals.weak_quorum == 4


def test_weighted_round_robin_matches_power_and_interleaves() -> None:
    keys = signers(3)
    vals = valset(keys, [3, 2, 1])
    picks = [vals.proposer(h, 0) for h in range(600)]
    counts = Counter(picks)
    assert [counts[k.public_key] for k in keys] == [300, 200, 100]
    a, b, c = (k.public_key for k in keys)
    assert picks[:6] == [a, b, a, c, b, a]  # nginx smooth weighted round robin
    assert vals.proposer(5, 1) == vals.proposer(6, 0)  # slot = height + round


def test_unknown_keys_have_no_power_and_bad_sets_are_refused() -> None:
    vals = valset(signers(4))
    assert vals.power_of(bytes(32)) == 0
    with pytest.raises(UsageError):
        ValidatorSet(())
    key = signers(1)[0].public_key
    with pytest.raises(UsageError):
        ValidatorSet((Validator(key, 1), Validator(key, 2)))
    with pytest.raises(UsageError):
        Validator(key, 0)


def test_order_is_canonical() -> None:
    keys = signers(5)
    a = valset(keys)
    b = valset(list(reversed(keys)))
    assert a == b and a.digest() == b.digest()
    assert [a.proposer(h, 0) for h in range(10)] == [b.proposer(h, 0) for h in range(10)]
