"""What every stage shares: the count-label rule (labels), the verify rule (verify), local and S3 I/O (storage), the
command-line convention (cli)."""

# The standard-library modules that ship as code/core/ beside the handler, in the training bundle and in the Space.
SHIPPED = ("core/__init__.py", "core/labels.py", "core/cli.py", "core/verify.py")

