"""Persistence: the SQLAlchemy schema and every query. Nothing outside `db/` writes SQL."""
