"""The database adapter: jobs in Django's own database (SQLite or PostgreSQL)."""
from .adapter import DatabaseAdapter

__all__ = ["DatabaseAdapter"]
