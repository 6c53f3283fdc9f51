"""Vision: opening outside pictures, the backbones, the embedder that owns the model,
and the garment finder. The only room that imports torch."""
