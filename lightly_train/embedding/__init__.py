"""The ``embed`` command: a Ray Data pipeline from image files to an embeddings file.

One module per stage: ``config`` (arguments), ``embedder`` (the model actor),
``writers`` (output formats) and ``pipeline`` (the graph, read top to bottom).
"""
