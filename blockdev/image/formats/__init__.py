"""Per-format image readers and writers behind `blockdev.image.file`.

One module per format (`qcow2`, `vmdk`, …), the shared file access in `base`, the
values they produce in `facts`, and the driver table in `registry`. Importing this
package loads none of them: a machine without images never pays for the readers.
"""
