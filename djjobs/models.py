"""djjobs' models: the admin's permission anchor (more come with the database adapter)."""
from .admin_models import Dashboard  # noqa: F401
