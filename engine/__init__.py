"""The recommendation engine: images, backbones, embedder, vector index, styles, service.

Nothing outside this package imports torch or hnswlib.
"""
