"""The consensus driver writes one safety state per input, not one per signed message."""

from __future__ import annotations

from typing import Any

from consensus.events import (
    Action,
    BroadcastProposal,
    BroadcastVote,
    CommitBlock,
    PersistSafety,
    ScheduleTimeout,
)
from node.runtime import _coalesce, _CommitWithSafety


def _safety(tag: str) -> PersistSafety:
    return PersistSafety(tag)  # type: ignore[arg-type]  # the payload is not looked at


def _vote(tag: str) -> BroadcastVote:
    return BroadcastVote(tag)  # type: ignore[arg-type]


def _names(actions: list[Any]) -> list[str]:
    out = []
    for a in actions:
        if isinstance(a, _CommitWithSafety):
            out.append(f"commit{a.commit.height}+{a.safety.state}")
        elif isinstance(a, CommitBlock):
            out.append(f"commit{a.height}")
        elif isinstance(a, PersistSafety):
            out.append(f"persist:{a.state}")
        elif isinstance(a, BroadcastVote):
            out.append(f"send:{a.vote}")
        elif isinstance(a, BroadcastProposal):
            out.append(f"send:{a.proposal}")
        else:
            out.append(type(a).__name__)
    return out


def test_single_writes_are_left_alone() -> None:
    timer = ScheduleTimeout(None, 5)  # type: ignore[arg-type]
    actions: list[Action] = [timer, _safety("prevote"), _vote("prevote")]
    assert _coalesce(actions) == actions
    assert _coalesce([]) == []


def test_two_signatures_one_write_before_both_messages() -> None:
    actions: list[Action] = [_safety("prevote"), _vote("prevote"), _safety("precommit"),
                             _vote("precommit")]
    assert _names(_coalesce(actions)) == ["persist:precommit", "send:prevote",
                                          "send:precommit"]


def test_next_heights_state_is_written_with_the_block() -> None:
    commit = CommitBlock(7, b"id", b"block", None)  # type: ignore[arg-type]
    timer = ScheduleTimeout(None, 5)  # type: ignore[arg-type]
    proposal = BroadcastProposal("proposal8", b"block8")  # type: ignore[arg-type]
    actions: list[Action] = [_safety("precommit7"), _vote("precommit7"), commit, timer,
                             _safety("propose8"), proposal, _vote("late-relay")]
    # Every message leaves after the one write, in its original order; actions after the
    # last write keep their place.
    assert _names(_coalesce(actions)) == [
        "commit7+propose8", "ScheduleTimeout", "send:precommit7", "send:proposal8",
        "send:late-relay"]
    # A commit not followed by any signature keeps its own write, in place.
    assert _coalesce([commit, timer, _vote("relay")]) == [commit, timer, _vote("relay")]
    assert _names(_coalesce([_safety("a"), _vote("a"), commit, timer])) == [
        "persist:a", "send:a", "commit7", "ScheduleTimeout"]
