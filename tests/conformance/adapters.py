"""The adapters the conformance suite runs against: each name needs a fixture
``<name with - as _>_adapter`` (see tests/fixtures/). A new adapter joins by
adding its name here."""
CONFORMANCE_ADAPTERS = [
    "memory",
    "test",
    "database-sqlite",
    "database-postgres",
    "redis",
]
