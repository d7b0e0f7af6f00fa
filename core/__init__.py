"""What every stage shares: the count-label rule (labels), local and S3 I/O (storage), the command-line convention
(cli)."""
