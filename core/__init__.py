"""What every stage shares: the count-label rule (labels), the verify rule (verify), local and S3 I/O (storage), the
command-line convention (cli), the image processor's fast path (preprocess: training and serving)."""

# The modules that ship as code/core/ beside the handler, in the training bundle and in the Space (the standard
# library, plus numpy and PIL for preprocess: every container that runs them has both).
SHIPPED = ("core/__init__.py", "core/labels.py", "core/cli.py", "core/verify.py", "core/preprocess.py")

