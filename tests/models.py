import uuid

from django.db import models


class Article(models.Model):
    title = models.CharField(max_length=200)


class Token(models.Model):
    """A model with a UUID primary key, for GlobalID round trips."""
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    name = models.CharField(max_length=50)
