"""Training and evaluation (the fashion head, `fashionbot eval`), apart from serving."""
