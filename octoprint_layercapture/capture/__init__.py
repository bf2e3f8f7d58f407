"""Capturing a layer: reading the G-code, planning the grid, the sequence of moves and
the ports it talks through, the worker that runs it."""
