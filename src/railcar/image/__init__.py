"""Building Railcar OS images: spec, Debian root filesystem, verity /usr, ESP, GPT disk.

``railcar build SPEC --output DIR`` (:mod:`railcar.image.cli`) drives :func:`build_image`.
Boot entries for systemd-boot as a projection of gptprio live in
:mod:`railcar.image.bootentries` (ADR 0011).
"""

from railcar.image.build import BuildResult, build_image
from railcar.image.spec import ImageSpec, load_spec, parse_spec

__all__ = ["BuildResult", "ImageSpec", "build_image", "load_spec", "parse_spec"]
