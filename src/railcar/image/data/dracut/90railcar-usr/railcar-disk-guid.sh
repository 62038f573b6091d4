#!/bin/sh
# Give a disk that still has the image's build-time GUID a random one, once, on first boot:
# Flatcar's disk-uuid.service (bootengine dracut/30disk-uuid, spec §1). The build writes
# 00000000-0000-0000-0000-000000000001 so every copy of an image starts identical. -e also moves
# the backup GPT to the end of a disk larger than the image (Flatcar runs `cgpt repair` first).
set -u
say() { echo "railcar-disk-guid: $*" > /dev/kmsg; echo "railcar-disk-guid: $*" >&2; }
fixed=00000000-0000-0000-0000-000000000001
for sys in /sys/block/*; do
    [ -e "$sys/device" ] || continue  # whole disks only (no dm, loop or zram)
    dev=/dev/${sys##*/}
    guid=$(blkid -p -s PTUUID -o value "$dev" 2>/dev/null) || continue
    [ "$guid" = "$fixed" ] || continue
    if sgdisk -e --disk-guid=R "$dev" > /dev/null 2>&1; then
        say "$dev: disk GUID $(blkid -p -s PTUUID -o value "$dev") (was $fixed)"
    else
        say "$dev: could not set a random disk GUID; keeping $fixed"
    fi
done
exit 0
