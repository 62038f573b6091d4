"""Built example images for tests, made once per test run and shared by pytest-xdist workers.

The first worker to ask builds (``railcar.image.build_image`` with the default cache, so the
Debian root filesystem is reused between runs); the others wait on a lock and reuse the output.
Outputs of earlier runs are removed once they are two hours old, so disk use stays near one
run's images while a run going on at the same time (another worktree) keeps its own.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

from railcar.image import BuildResult, build_image, parse_spec
from railcar.image.build import default_cache
from railcar.image.rootfs import cache_lock

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "railcar.toml"
STALE = 2 * 3600  # seconds: older outputs of other runs are removed
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex


def example_spec_text(version: str) -> str:
    text = EXAMPLE.read_text()
    return text.replace('version = "1.0.0"', f'version = "{version}"', 1)


def built_image(version: str = "1.0.0") -> BuildResult:
    """The example image at ``version``, built once per test run."""
    cache = default_cache()
    images = cache / "test-images"
    out = images / f"{_RUN}-{version}"
    with cache_lock(cache, "test-images"):
        if images.is_dir():
            for old in images.iterdir():
                if not old.name.startswith(_RUN) and time.time() - old.stat().st_mtime > STALE:
                    shutil.rmtree(old, ignore_errors=True)
        if not (out / "build.json").is_file():
            spec = parse_spec(example_spec_text(version), path=EXAMPLE)
            build_image(spec, out, cache=cache)
    data = json.loads((out / "build.json").read_text())
    return BuildResult(**data)
