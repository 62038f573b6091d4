#!/bin/sh
# Open the booted USR slot as /dev/mapper/usr.
#   verity.usrhash=HEX                root hash, bound to this kernel (UKI command line)
#   railcar.verity_hash_offset=BYTES  where the hash tree starts inside the partition
#   verity.usr=PARTUUID=…|/dev/…      the slot; by default the one systemd-boot booted
#                                     (LoaderEntrySelected: railcar-a… or railcar-b…)
set -eu
say() { echo "railcar-usr-verity: $*" > /dev/kmsg; echo "railcar-usr-verity: $*" >&2; }

hash= offset= dev=
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        verity.usrhash=*) hash=${arg#*=} ;;
        railcar.verity_hash_offset=*) offset=${arg#*=} ;;
        verity.usr=*) dev=${arg#*=} ;;
    esac
done
[ -n "$hash" ] || { say "no verity.usrhash= on the kernel command line"; exit 1; }
[ -n "$offset" ] || { say "no railcar.verity_hash_offset= on the kernel command line"; exit 1; }

if [ -z "$dev" ]; then
    efivars=/sys/firmware/efi/efivars
    if [ -d "$efivars" ] && [ -z "$(ls "$efivars" 2>/dev/null)" ]; then
        modprobe efivarfs 2>/dev/null || true
        mount -t efivarfs efivarfs "$efivars" || say "cannot mount efivarfs"
    fi
    # systemd-boot's loader interface: 4 attribute bytes, then the entry id in UTF-16LE.
    # efivarfs reports size 0, so read through a pipe rather than letting tail seek.
    entry=$(cat "$efivars/LoaderEntrySelected-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f" \
        2>/dev/null | tail -c +5 | tr -d '\000') || entry=
    case "$entry" in
        railcar-a*) dev=PARTUUID=7130c94a-213a-4e5a-8e26-6cce9662f132 ;;
        railcar-b*) dev=PARTUUID=e03dd35c-7c2d-4a47-b3fe-27f15780a57c ;;
        *) say "cannot tell the booted slot: loader entry '$entry', no verity.usr="; exit 1 ;;
    esac
fi
case "$dev" in
    PARTUUID=*) path=/dev/disk/by-partuuid/$(echo "${dev#PARTUUID=}" | tr 'A-F' 'a-f') ;;
    PARTLABEL=*) path=/dev/disk/by-partlabel/${dev#PARTLABEL=} ;;
    *) path=$dev ;;
esac
# Woken by udev when the link appears (no polling: under emulation each 0.5 s poll cost a
# quarter second on average, and every fork counts).
udevadm wait --timeout=60 "$path" || { say "$path did not appear"; exit 1; }
# dm-verity takes the best SHA-256 the kernel has when the table is loaded, for as long as /usr
# is mapped. The CPU's (SHA-NI, AVX2, ...; on x86 the sha256_ssse3 module) is otherwise loaded
# by udev's coldplug, which can come after this point, leaving /usr on sha256-generic until the
# next boot. Load it first; a CPU without any of them keeps the generic one.
modprobe -q crypto-sha256 2>/dev/null || :
say "opening $path (hash offset $offset, root hash $hash)"
# --panic-on-corruption: a corrupted block ends the boot (panic=, then reboot) rather than
# handing I/O errors to whatever reads /usr.
veritysetup open --panic-on-corruption --hash-offset="$offset" "$path" usr "$path" "$hash"
