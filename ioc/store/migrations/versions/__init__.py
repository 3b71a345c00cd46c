"""The revisions, one file each, applied in ``down_revision`` order (see README.md here)."""
