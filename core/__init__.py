"""What every stage shares: the count-label rule (labels), local/S3 I/O (storage) and the command-line convention (cli)."""
