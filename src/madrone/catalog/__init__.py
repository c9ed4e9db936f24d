"""The catalog: datasets, the job queue, users and tokens, on SQLite or PostgreSQL."""
