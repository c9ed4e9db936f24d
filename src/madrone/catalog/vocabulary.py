"""The catalog's words, importable without a database driver or SQLAlchemy: the CLI builds
its choices from them at start-up, and the models check against the same tuples."""

DATASET_KINDS = ("index", "geotiff", "image", "vector", "point")
SCOPES = ("local", "shared")
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL_STATES = ("succeeded", "failed", "cancelled")
ROLES = ("viewer", "editor", "admin")
SORT_KEYS = ("created", "updated", "name", "date")
# The newest schema revision (the last file in migrations/versions).
HEAD = "0005"
