"""The catalogue: the hnswlib index cache over the database, and the ingest pipeline
(readers → decode/embed → writer → runner with progress)."""
