"""The server's fixed vocabularies, with their upstream sources (``shared/spec/
omaha-delivery.md`` §3.3, §4.2, §2.6)."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class InstanceStatus(IntEnum):
    """Nebraska backend/pkg/api/internal/types/instance.go InstanceStatus*."""

    UNDEFINED = 1
    UPDATE_GRANTED = 2
    ERROR = 3
    COMPLETE = 4
    INSTALLED = 5
    DOWNLOADED = 6
    DOWNLOADING = 7
    ON_HOLD = 8


# Statuses that end an update attempt (Nebraska updateInstanceData clears update_in_progress).
TERMINAL_STATUSES = frozenset(
    {
        InstanceStatus.COMPLETE,
        InstanceStatus.ERROR,
        InstanceStatus.UNDEFINED,
        InstanceStatus.ON_HOLD,
    }
)
# Statuses during which Nebraska refuses a new grant (ErrUpdateInProgressOnInstance).
BUSY_STATUSES = frozenset(
    {InstanceStatus.DOWNLOADING, InstanceStatus.DOWNLOADED, InstanceStatus.INSTALLED}
)


class ActivityClass(IntEnum):
    """Nebraska backend/pkg/api/internal/types/activity.go."""

    PACKAGE_NOT_FOUND = 1
    ROLLOUT_STARTED = 2
    ROLLOUT_FINISHED = 3
    ROLLOUT_FAILED = 4
    INSTANCE_UPDATE_FAILED = 5
    CHANNEL_PACKAGE_UPDATED = 6


class Severity(IntEnum):
    SUCCESS = 1
    INFO = 2
    WARNING = 3
    ERROR = 4


class Role(StrEnum):
    READ_ONLY = "read-only"
    ADMIN = "admin"


# The legacy CoreOS/Flatcar group UUIDs nodes may send as track (Nebraska
# backend/pkg/omaha/omaha.go initialFlatcarGroups; migrations 0006/0008/0009).
LEGACY_GROUP_TRACKS: dict[str, str] = {
    "9a2deb70-37be-4026-853f-bfdd6b347bbe": "stable",
    "3fe10490-dd73-4b49-b72a-28ac19acfcdc": "beta",
    "5b810680-e36a-4879-b98a-4f989e80b899": "alpha",
    "72834a2b-ad86-4d6d-b498-e08a19ebe54e": "edge",
    "11a585f6-9418-4df0-8863-78b2fd3240f8": "stable",
    "d112ec01-ba34-4a9e-9d4b-9814a685f266": "beta",
    "e641708d-fb48-4260-8bdf-ba2074a1147a": "alpha",
    "b4b2fa22-c1ea-498c-a8ac-c1dc0b1d7c17": "edge",
}

ARCHES = ("amd64", "aarch64", "x86")


def arch_of(board: str, os_arch: str = "") -> str:
    """The node's architecture, in Nebraska's order: board, then os@arch, default amd64
    (backend/pkg/omaha/omaha.go getArch)."""
    by_board = {"amd64-usr": "amd64", "arm64-usr": "aarch64"}
    by_os = {"x64": "amd64", "arm": "aarch64", "x86": "x86"}
    if board in by_board:
        return by_board[board]
    if os_arch in by_os:
        return by_os[os_arch]
    if os_arch in ARCHES:
        return os_arch
    return "amd64"


def normalize_app_id(appid: str) -> str:
    """Braces stripped, lower case: how nodes' app ids match stored ones (Nebraska GetAppID)."""
    return appid.strip().strip("{}").lower()
