"""hvsim's guest kernel: one Linux-like kernel's memory management (see DESIGN.md)."""
