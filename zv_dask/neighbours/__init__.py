"""Neighbour searches inside one task: read a query group's cells plus a halo ring of
neighbouring cells, build a KD-tree, answer nearest / within / pair queries exactly."""
