import pytest

from services.common.queue import EntryStatus
from services.control_center.workflow import (
    ForbiddenChangeError,
    Role,
    allowed_from,
    may_set,
    next_statuses,
)

NEW, ACK, RES, FP = (
    EntryStatus.NEW,
    EntryStatus.ACKNOWLEDGED,
    EntryStatus.RESOLVED,
    EntryStatus.FALSE_POSITIVE,
)


@pytest.mark.parametrize(
    ("role", "current", "allowed"),
    [
        (Role.VIEWER, NEW, []),
        (Role.OPERATOR, NEW, [ACK, FP]),
        (Role.OPERATOR, ACK, [RES, FP]),
        (Role.OPERATOR, RES, []),
        (Role.OPERATOR, FP, []),
        (Role.SUPERVISOR, NEW, [ACK, FP]),
        (Role.SUPERVISOR, ACK, [NEW, RES, FP]),
        (Role.SUPERVISOR, RES, [NEW]),
        (Role.SUPERVISOR, FP, [NEW]),
    ],
)
def test_the_contracts_workflow(
    role: Role, current: EntryStatus, allowed: list[EntryStatus]
) -> None:
    assert sorted(next_statuses(role, current)) == sorted(allowed)


@pytest.mark.parametrize(
    ("role", "target"),
    [(Role.VIEWER, ACK), (Role.VIEWER, NEW), (Role.OPERATOR, NEW)],
)
def test_a_role_that_may_not_set_a_status_is_forbidden(role: Role, target: EntryStatus) -> None:
    assert not may_set(role, target)
    with pytest.raises(ForbiddenChangeError, match=role.value):
        allowed_from(role, target)


def test_resolved_cannot_go_back_to_acknowledged() -> None:
    assert RES not in allowed_from(Role.SUPERVISOR, ACK)
