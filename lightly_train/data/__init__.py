"""Finding image files and decoding them: shared by ``train`` and ``embed``."""
