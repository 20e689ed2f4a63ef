"""The status workflow the server enforces, and who may make each change.

Allowed (``shared/contracts.md``): new → acknowledged or false_positive; acknowledged →
resolved or false_positive; a supervisor may reopen an entry (→ new). A viewer changes
nothing. A change the role may not make is *forbidden* (HTTP 403) whatever the entry's
state; a change the role may make but the entry's status does not allow is a *conflict*
(HTTP 409).
"""

from __future__ import annotations

from enum import StrEnum

from services.common.queue import EntryStatus


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"


# For each target status, the statuses it may be reached from.
_FROM: dict[EntryStatus, frozenset[EntryStatus]] = {
    EntryStatus.ACKNOWLEDGED: frozenset({EntryStatus.NEW}),
    EntryStatus.FALSE_POSITIVE: frozenset({EntryStatus.NEW, EntryStatus.ACKNOWLEDGED}),
    EntryStatus.RESOLVED: frozenset({EntryStatus.ACKNOWLEDGED}),
    EntryStatus.NEW: frozenset(
        {EntryStatus.ACKNOWLEDGED, EntryStatus.RESOLVED, EntryStatus.FALSE_POSITIVE}
    ),
}

# For each role, the target statuses it may set.
_MAY_SET: dict[Role, frozenset[EntryStatus]] = {
    Role.VIEWER: frozenset(),
    Role.OPERATOR: frozenset(
        {EntryStatus.ACKNOWLEDGED, EntryStatus.RESOLVED, EntryStatus.FALSE_POSITIVE}
    ),
    Role.SUPERVISOR: frozenset(EntryStatus),
}


class ForbiddenChangeError(PermissionError):
    """The role may not set that status at all."""


def may_set(role: Role, target: EntryStatus) -> bool:
    """Whether ``role`` may ever set ``target``.

    >>> may_set(Role.OPERATOR, EntryStatus.NEW), may_set(Role.SUPERVISOR, EntryStatus.NEW)
    (False, True)
    """
    return target in _MAY_SET[role]


def allowed_from(role: Role, target: EntryStatus) -> frozenset[EntryStatus]:
    """The statuses from which ``role`` may set ``target``; raises
    :class:`ForbiddenChangeError` if it may not set it at all.

    >>> sorted(allowed_from(Role.OPERATOR, EntryStatus.RESOLVED))
    [<EntryStatus.ACKNOWLEDGED: 'acknowledged'>]
    """
    if not may_set(role, target):
        raise ForbiddenChangeError(f"a {role.value} may not set an entry to {target.value}")
    return _FROM[target]


def next_statuses(role: Role, current: EntryStatus) -> list[EntryStatus]:
    """What ``role`` may change an entry in ``current`` to, in the workflow's order.

    >>> next_statuses(Role.OPERATOR, EntryStatus.NEW)
    [<EntryStatus.ACKNOWLEDGED: 'acknowledged'>, <EntryStatus.FALSE_POSITIVE: 'false_positive'>]
    """
    return [t for t in EntryStatus if may_set(role, t) and current in _FROM[t]]
