"""Default limits of one grading. Kept apart from the engine so the CLI can show them without importing torch."""
UNIT_TIMEOUT = 10.0      # seconds for one unit on all its replays
TOTAL_TIMEOUT = 60.0     # seconds for the whole submission
MEMORY_LIMIT = 6 << 30   # address space of a process that runs student code, bytes
