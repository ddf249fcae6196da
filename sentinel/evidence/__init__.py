"""Evidence: the hash-chained alert log and its signed checkpoints, the flight recorder,
signed run records and the drill."""
