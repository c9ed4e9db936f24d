"""Executors move TileTasks to run_tile and TileResults back; nothing else."""
