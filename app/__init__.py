"""Customer information service."""
