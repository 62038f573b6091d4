#!/bin/sh
# Enable (or disable) the units an Ignition config named. Ignition 2.14 records `enabled:` as
# lines of /etc/systemd/system-preset/20-ignition.preset and leaves the rest to systemd's
# first-boot presetting, which systemd 252 does only when /etc/machine-id is missing or
# "uninitialized" — a Railcar image ships it empty, and presetting everything would also apply
# Debian's presets. So only Ignition's own lines are applied, offline, before switch-root.
set -eu
preset=/sysroot/etc/systemd/system-preset/20-ignition.preset
while read -r verb unit _; do
    case "$verb" in
        enable|disable)
            echo "railcar-ignition-presets: $verb $unit" > /dev/kmsg
            systemctl --root=/sysroot "$verb" "$unit"
            ;;
    esac
done < "$preset"
