"""hvsim."""
