"""The worker: ``manage.py runjobs`` (see process.py) and the processor every runner shares."""
