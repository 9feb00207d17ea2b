"""Running past one machine: the shared instance's profile and a host's Celery workers."""
