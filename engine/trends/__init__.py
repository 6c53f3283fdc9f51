"""Trends: a shop crawl for a tag, deduplicated into offers and indexed live."""
