"""The capture folder: file names, atomic writes, the image writer and the gallery's index."""
