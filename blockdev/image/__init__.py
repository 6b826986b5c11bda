"""blockdev.image: the block layer's real-file edge.

`io` (file nodes and format images, as the graph sees them), over `file` (opening,
probing, creating images), `lock` (QEMU's OFD byte locks) and `formats` (per-format
headers and creation).
"""
