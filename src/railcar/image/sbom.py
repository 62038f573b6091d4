"""An SPDX 2.3 JSON software bill of materials for a built image. Pure.

One SPDX package per Debian package installed in /usr (name, version, a ``pkg:deb/debian/…``
purl with the architecture), described by the image as a whole. Deterministic: the document
namespace and creation time come from the spec (name, version, SOURCE_DATE_EPOCH), so a rebuild
gives the same file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from railcar.image.layout import derived_uuid
from railcar.image.spec import ImageSpec

_ID_CHARS = re.compile(r"[^A-Za-z0-9.-]")


def _spdx_id(name: str, version: str) -> str:
    return "SPDXRef-deb-" + _ID_CHARS.sub("-", f"{name}-{version}")


def spdx_document(spec: ImageSpec, packages: Iterable[tuple[str, str]]) -> dict[str, Any]:
    created = datetime.fromtimestamp(spec.source_date_epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    image_id = "SPDXRef-image"
    spdx_packages: list[dict[str, Any]] = [
        {
            "SPDXID": image_id,
            "name": spec.name,
            "versionInfo": spec.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "primaryPackagePurpose": "OPERATING-SYSTEM",
        }
    ]
    relationships = [
        {
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": image_id,
        }
    ]
    arch = spec.architecture.value
    for name, version in sorted(set(packages)):
        ref = _spdx_id(name, version)
        purl = f"pkg:deb/debian/{quote(name)}@{quote(version)}?arch={arch}&distro={spec.suite}"
        spdx_packages.append(
            {
                "SPDXID": ref,
                "name": name,
                "versionInfo": version,
                "supplier": "Organization: Debian",
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": False,
                "externalRefs": [
                    {
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": purl,
                    }
                ],
            }
        )
        relationships.append(
            {"spdxElementId": image_id, "relationshipType": "CONTAINS", "relatedSpdxElement": ref}
        )
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{spec.name}-{spec.version}",
        "documentNamespace": f"urn:uuid:{derived_uuid(spec, 'spdx')}",
        "creationInfo": {"created": created, "creators": ["Tool: railcar build"]},
        "packages": spdx_packages,
        "relationships": relationships,
    }
