"""The image spec: the example parses, and every kind of bad input names what was wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from railcar.image.errors import SpecError
from railcar.image.spec import (
    Architecture,
    Compression,
    DigestAlgorithm,
    load_spec,
    parse_spec,
    settings_help,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "railcar.toml"


def test_example_spec_parses_into_typed_values() -> None:
    spec = load_spec(EXAMPLE)
    assert spec.name == "railcar"
    assert spec.architecture is Architecture.AMD64
    assert spec.compression is Compression.LZ4
    assert spec.kernel_package == "linux-image-cloud-amd64"
    assert "containerd" in spec.packages and "docker.io" in spec.packages
    assert spec.partitions.usr == 1024
    assert spec.board == "amd64-usr"
    motd = [f for f in spec.files if str(f.target) == "/usr/share/railcar/motd"]
    assert motd and motd[0].source.is_file()


def test_payload_min_saving_reaches_the_spec() -> None:
    assert parse_spec('[image]\nversion = "1"\n').payload_min_saving == 0
    spec = parse_spec('[image]\nversion = "1"\n[update]\npayload_min_saving = 50\n')
    assert spec.payload_min_saving == 50


def test_digests_default_to_sha256_and_keep_the_given_order() -> None:
    assert parse_spec('[image]\nversion = "1"\n').digests == (DigestAlgorithm.SHA256,)
    spec = parse_spec('[image]\nversion = "1"\ndigests = ["sha512", "sha256"]\n')
    assert spec.digests == (DigestAlgorithm.SHA512, DigestAlgorithm.SHA256)


def test_cluster_size_defaults_to_one_block() -> None:
    assert parse_spec('[image]\nversion = "1"\n').cluster_kib == 4
    assert parse_spec('[image]\nversion = "1"\n[usr]\ncluster_kib = 64\n').cluster_kib == 64


def test_documentation_is_left_out_of_usr_but_not_the_copyright_files() -> None:
    spec = parse_spec('[image]\nversion = "1"\n')
    assert "/usr/share/man/*" in spec.path_exclude and "/usr/share/doc/*" in spec.path_exclude
    assert spec.path_include == ("/usr/share/doc/*/copyright", "/usr/share/locale/locale.alias")
    kept = parse_spec('[image]\nversion = "1"\n[packages]\npath_exclude = []\n')
    assert kept.path_exclude == ()


def test_kernel_follows_the_architecture() -> None:
    spec = parse_spec('[image]\nversion = "1"\n[distribution]\narchitecture = "arm64"\n')
    assert spec.kernel_package == "linux-image-cloud-arm64"
    assert spec.architecture.efi_suffix == "aa64"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[image]\n", "image.version is required"),
        ('[image]\nversion = "1"\nflavour = "x"\n', "unknown setting image.flavour"),
        ('[image]\nversion = "1"\n[disk]\n', "unknown section [disk]"),
        ('[image]\nversion = 1\n', "image.version: found int 1, expected a string"),
        ('[image]\nversion = "1"\n[distribution]\narchitecture = "s390x"\n',
         "distribution.architecture: 's390x' is not valid, expected one of 'amd64', 'arm64'"),
        ('[image]\nversion = "1"\n[packages]\ninclude = ["ok", "Bad Name"]\n',
         "packages.include: 'Bad Name' is not valid, expected a Debian package name"),
        ('[image]\nversion = "1"\n[partitions]\nusr = 0\n',
         "partitions.usr: 0 is out of range, expected 1 to 1048576"),
        ('[image]\nversion = "1"\n[boot]\ntries = true\n', "boot.tries: found bool True"),
        ('[image]\nversion = "1"\n[update]\nserver = "ftp://x"\n',
         "update.server: 'ftp://x' is not valid"),
        ('[image]\nversion = "1"\n[update]\npayload_min_saving = 101\n',
         "update.payload_min_saving: 101 is out of range, expected 0 to 100"),
        ('[image]\nversion = "1"\n[content.files]\n"etc/x" = "y"\n',
         "expected an absolute path in the image"),
        ('[image]\nversion = "1"\n[content.files]\n"/etc/x" = "no-such-file"\n',
         "is not a file"),
        ('[image]\nversion = "1"\n[content]\ndisable_units = ["docker"]\n',
         "content.disable_units: 'docker' is not valid, expected a systemd unit name"),
        ('[image]\nversion = "1"\n[content]\nenable_units = ["b.service", "a.socket"]\n'
         'disable_units = ["a.socket", "b.service", "c.timer"]\n',
         "content.disable_units: a.socket, b.service also in content.enable_units"),
        ('[image]\nversion = "1"\ndigests = ["md5"]\n',
         "image.digests: 'md5' is not valid, expected one of 'sha256', 'sha512'"),
        ('[image]\nversion = "1"\ndigests = []\n',
         "image.digests: [] is not valid, expected each of 'sha256', 'sha512' at most once"),
        ('[image]\nversion = "1"\ndigests = ["sha256", "sha256"]\n',
         "image.digests: ['sha256', 'sha256'] is not valid"),
        ('[image]\nversion = "1"\n[usr]\ncluster_kib = 48\n',
         "usr.cluster_kib: 48 is not valid, expected a power of two, 4 to 1024"),
        ('[image]\nversion = "1"\n[usr]\ncluster_kib = 2\n', "usr.cluster_kib: 2 is not valid"),
        ('[image]\nversion = "1"\n[usr]\ncluster_kib = 2048\n',
         "usr.cluster_kib: 2048 is not valid"),
        ('[image]\nversion = "1"\n[packages]\npath_exclude = ["/etc/x/*"]\n',
         "packages.path_exclude: '/etc/x/*' is not valid, expected a path or glob under /usr/"),
        ('[image]\nversion = "1"\n[packages]\npath_include = ["/usr/share/../lib/x"]\n',
         "packages.path_include: '/usr/share/../lib/x' is not valid"),
        ('[image]\nversion = "1"\n[packages]\npath_exclude = ["/usr/share/a b"]\n',
         "without spaces or '..'"),
        ("[image\n", "not valid TOML"),
    ],
)  # fmt: skip
def test_bad_spec_is_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unreadable_spec(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_spec(bad)


def test_help_lists_every_setting() -> None:
    text = settings_help()
    for key in ("image.version", "distribution.suite", "partitions.root", "boot.tries"):
        assert key in text
