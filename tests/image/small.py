"""A spec for a small disk (partition sizes in MiB), for layout and boot-control tests."""

SMALL = """
[image]
version = "1.0.0"
[partitions]
esp = 33
usr = 16
oem = 8
oem_config = 4
root = 16
"""
