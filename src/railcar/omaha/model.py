"""The Omaha v3 vocabulary of update_engine and Nebraska, as plain frozen records.

Constants cite ``shared/spec/omaha-delivery.md`` and its upstream files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

# Flatcar's (and CoreOS's) application id: update_engine omaha_request_params.cc kAppId;
# Nebraska migration 0006_initial_application.sql.
FLATCAR_APP_ID = "e96281a6-d1af-4bde-9a0a-97b76e56dc57"
PROTOCOL_VERSION = "3.0"
# update_engine omaha_request_params.cc kOsVersion / kOsPlatform.
OS_VERSION = "Chateau"
OS_PLATFORM = "CoreOS"
# The request body cap Nebraska applies (backend/pkg/handler/handler.go UpdateMaxRequestSize).
MAX_DOCUMENT_BYTES = 64 * 1024
# update_engine action_processor.h / utils.cc GetErrorCodeFlags: the top four bits are flags;
# bit 28 (TestOmahaUrl) is set whenever SERVER is not Flatcar's, so mask before interpreting.
ERROR_CODE_MASK = 0x0FFFFFFF
ERROR_FLAG_DEV_MODE = 1 << 31
ERROR_FLAG_RESUMED = 1 << 30
ERROR_FLAG_TEST_IMAGE = 1 << 29
ERROR_FLAG_TEST_OMAHA_URL = 1 << 28


class EventType(IntEnum):
    """update_engine omaha_request_action.h OmahaEvent::Type (and CoreRoller's 800)."""

    UPDATE_COMPLETE = 3
    UPDATE_DOWNLOAD_STARTED = 13
    UPDATE_DOWNLOAD_FINISHED = 14
    INSTALL_COMPLETION_PREVENTED = 800


class EventResult(IntEnum):
    """update_engine omaha_request_action.h OmahaEvent::Result."""

    ERROR = 0
    SUCCESS = 1
    SUCCESS_REBOOT = 2
    UPDATE_DEFERRED = 9


class ErrorCode(IntEnum):
    """The update_engine ActionExitCode values Railcar produces or reasons about
    (update_engine src/update_engine/action_processor.h)."""

    SUCCESS = 0
    ERROR = 1
    OMAHA_REQUEST_ERROR = 2
    INSTALL_DEVICE_OPEN_ERROR = 7
    KERNEL_DEVICE_OPEN_ERROR = 8
    DOWNLOAD_TRANSFER_ERROR = 9
    PAYLOAD_HASH_MISMATCH = 10
    PAYLOAD_SIZE_MISMATCH = 11
    DOWNLOAD_PAYLOAD_VERIFICATION_ERROR = 12
    DOWNLOAD_NEW_PARTITION_INFO_ERROR = 13
    DOWNLOAD_WRITE_ERROR = 14
    NEW_ROOTFS_VERIFICATION_ERROR = 15
    NEW_KERNEL_VERIFICATION_ERROR = 16
    DOWNLOAD_INVALID_METADATA_MAGIC = 21
    DOWNLOAD_MANIFEST_PARSE_ERROR = 23
    DOWNLOAD_OPERATION_HASH_MISMATCH = 29
    OMAHA_REQUEST_EMPTY_RESPONSE = 30
    OMAHA_REQUEST_XML_PARSE_ERROR = 31
    OMAHA_RESPONSE_INVALID = 34
    DOWNLOAD_OPERATION_HASH_MISSING = 38
    ROLLBACK = 44
    POSTINSTALL_RUNNER_ERROR = 5


class AppStatus(StrEnum):
    OK = "ok"
    RESTRICTED = "restricted"
    UNKNOWN_APPLICATION = "error-unknownApplication"
    UNKNOWN_GROUP = "error-unknownApplicationOrGroup"
    NO_PACKAGE = "error-noPackageFound"
    FAILED_TO_RETRIEVE = "error-failedToRetrieveUpdatePackageInfo"
    INTERNAL = "error-internal"


class UpdateCheckStatus(StrEnum):
    OK = "ok"
    NO_UPDATE = "noupdate"
    INTERNAL = "error-internal"


def mask_error_code(code: int) -> int:
    """The ActionExitCode without update_engine's flag bits."""
    return code & ERROR_CODE_MASK


@dataclass(frozen=True)
class Event:
    type: int
    result: int
    error_code: int | None = None
    previous_version: str | None = None

    @property
    def code(self) -> int | None:
        """The error code with flag bits masked off (§9.6)."""
        return None if self.error_code is None else mask_error_code(self.error_code)


@dataclass(frozen=True)
class OsInfo:
    version: str = OS_VERSION
    platform: str = OS_PLATFORM
    sp: str = ""
    arch: str = ""


@dataclass(frozen=True)
class AppRequest:
    appid: str
    version: str = ""
    track: str = ""
    bootid: str = ""
    oem: str = ""
    oemversion: str = ""
    alephversion: str = ""
    machineid: str = ""
    machinealias: str = ""
    lang: str = "en-US"
    board: str = ""
    hardware_class: str = ""
    delta_okay: bool = False
    ping: bool = False
    updatecheck: bool = False
    events: tuple[Event, ...] = ()
    # Attributes Railcar's agent adds and Flatcar nodes do not send, e.g. versions rolled back
    # from; unknown attributes from other clients land here too.
    extra: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Request:
    apps: tuple[AppRequest, ...]
    protocol: str = PROTOCOL_VERSION
    version: str = ""
    updaterversion: str = ""
    installsource: str = "scheduler"
    ismachine: str = "1"
    os: OsInfo | None = None

    @property
    def interactive(self) -> bool:
        return self.installsource == "ondemandupdate"


@dataclass(frozen=True)
class Package:
    name: str
    size: int
    sha1_b64: str = ""
    sha256_hex: str | None = None
    required: bool = True


@dataclass(frozen=True)
class PostinstallAction:
    sha256_b64: str
    disable_payload_backoff: bool = True


@dataclass(frozen=True)
class Manifest:
    version: str
    packages: tuple[Package, ...]
    action: PostinstallAction


@dataclass(frozen=True)
class UpdateCheck:
    status: str
    urls: tuple[str, ...] = ()
    manifest: Manifest | None = None
    poll_interval: int | None = None


@dataclass(frozen=True)
class AppResponse:
    appid: str
    status: str = AppStatus.OK
    ping: bool = False
    updatecheck: UpdateCheck | None = None
    events: int = 0


@dataclass(frozen=True)
class Response:
    apps: tuple[AppResponse, ...]
    server: str = "railcar"
    protocol: str = PROTOCOL_VERSION
    daystart_elapsed_seconds: int = 0
