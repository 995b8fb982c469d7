"""The Redis adapter (docs/redis.md)."""
from .adapter import RedisAdapter

__all__ = ["RedisAdapter"]
