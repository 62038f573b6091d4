#!/bin/bash
# Railcar: open the booted slot's /usr (erofs + dm-verity hash tree at a fixed offset in the same
# partition) as /dev/mapper/usr. systemd 252's veritysetup generator cannot read a hash tree
# inside the data partition, so this small module does it, as Flatcar's minimal-init does.

check() {
    require_binaries veritysetup || return 1
    return 255
}

depends() {
    echo systemd dm
}

installkernel() {
    # crypto-sha256: the CPU's SHA-256 (sha256_ssse3 on x86), loaded before the slot is opened
    instmods dm_verity erofs efivarfs crypto-sha256
}

install() {
    inst_multiple veritysetup cat tr tail mount ls modprobe blkid udevadm
    inst_multiple -o sgdisk
    inst_script "$moddir/railcar-usr-verity.sh" /usr/lib/railcar/railcar-usr-verity
    inst_simple "$moddir/railcar-usr-verity.service" \
        "$systemdsystemunitdir/railcar-usr-verity.service"
    # Ignition relabels what it writes; without SELinux there is nothing to label (see script).
    if ! find_binary setfiles > /dev/null 2>&1; then
        inst_script "$moddir/setfiles-noop.sh" /usr/sbin/setfiles
    fi
    if [ -e "$initdir$systemdsystemunitdir/ignition-complete.target" ]; then
        inst_script "$moddir/railcar-ignition-presets.sh" /usr/lib/railcar/railcar-ignition-presets
        inst_simple "$moddir/railcar-ignition-presets.service" \
            "$systemdsystemunitdir/railcar-ignition-presets.service"
        $SYSTEMCTL -q --root "$initdir" add-requires ignition-complete.target \
            railcar-ignition-presets.service
    fi
    inst_script "$moddir/railcar-disk-guid.sh" /usr/lib/railcar/railcar-disk-guid
    inst_simple "$moddir/railcar-disk-guid.service" \
        "$systemdsystemunitdir/railcar-disk-guid.service"
    $SYSTEMCTL -q --root "$initdir" add-wants initrd-root-device.target \
        railcar-usr-verity.service
    inst_rules "$moddir/90-railcar-disk-guid.rules"
}
