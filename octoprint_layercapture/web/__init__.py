"""The HTTP side: blueprint routes, large-file routes, request parsing and zip downloads."""
