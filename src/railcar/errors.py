"""The root of every error Railcar raises on purpose.

Each component has its own subtree, documented in its ``errors`` module::

    RailcarError                      anything Railcar reports as a clear, one-line failure
    ├── payload.errors.PayloadError    CrAU payloads (see that module for the full tree)
    ├── release.keys.SigningKeyError   signing keys: unreadable, wrong type, HSM failures
    ├── release.version.VersionError   not a semantic version
    ├── omaha.errors.OmahaError        Omaha documents: too large, forbidden XML, malformed
    ├── gpt.errors.GptError            partition tables and gptprio
    ├── ignition.errors.IgnitionError  Railcar configs → Ignition configs (translate, validate)
    ├── server.db.DatabaseError        the server database cannot be opened
    ├── server.cli.ListenError         the server cannot listen on its address
    ├── server.admin.AdminError        admin requests the server refuses (carry an HTTP status)
    ├── server.client.AdminClientError the admin client's calls failed
    ├── demo.DemoError                 scripts/demo cannot go on (address taken, bad image dir)
    └── runner.ToolError               an external tool is missing or failed

A ``RailcarError`` carries a message that says what was wrong and what was expected, and an
optional ``hint`` for the person at the terminal. The CLI prints both on one line each and exits
with ``exit_code``; anything else escaping is a bug.
"""

from __future__ import annotations


class RailcarError(Exception):
    """A failure Railcar explains to its user; never a bug."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message
