"""Railcar VMs: boot built images in QEMU (UEFI, user networking, serial console to a file)."""

from railcar.vm.qemu import Accel, MarkerTimeoutError, Vm, VmConfig, VmError

__all__ = ["Accel", "MarkerTimeoutError", "Vm", "VmConfig", "VmError"]
