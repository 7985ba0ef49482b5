"""Default limits of one grading. Kept apart from the engine so the CLI can show them without importing torch."""
UNIT_TIMEOUT = 10.0      # seconds for one unit on all its replays
TOTAL_TIMEOUT = 60.0     # seconds for the whole submission
MEMORY_LIMIT = 6 << 30   # address space of a process that runs student code, bytes
MAX_NOTEBOOK_BYTES = 10 << 20  # a submitted .ipynb (the released one is ~80 KB; plots in outputs add some MB)
MAX_CELL_BYTES = 1 << 20       # one answer cell, UTF-8; a longer one is not scanned or run
