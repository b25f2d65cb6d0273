"""Importing TensorFlow without its start-up log lines (the CLI and the demo use this).

TensorFlow 2.21 writes a handful of lines to file descriptor 2 while it loads
(oneDNN, "Could not find cuda drivers", CPU-feature notices, "failed call to
cuInit" on a machine without a GPU). Some come from absl's C++ logging before
`absl::InitializeLog()` runs, so `TF_CPP_MIN_LOG_LEVEL` does not remove
them. `import_tensorflow(quiet=True)` imports TensorFlow and initialises its
devices with file descriptor 2 redirected to a temporary file, then writes
back every captured line that is not one of these known start-up notices, so
real errors (and the traceback of a failed import) still reach stderr. It
also sets `TF_CPP_MIN_LOG_LEVEL=1` (C++ INFO lines off; warnings and errors
kept) unless the variable is already set.
"""

import os
import re
import sys
import tempfile

STARTUP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|oneDNN custom operations are on"
    r"|Could not find cuda drivers"
    r"|cpu_feature_guard\.cc"
    r"|To enable the following instructions"
    r"|failed call to cuInit"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation placer already registered"
    r"|TF-TRT Warning: Could not find TensorRT"
    r"|This TensorFlow binary is optimized to use available CPU instructions")
"""Lines of TensorFlow's start-up chatter that `import_tensorflow` drops."""


def filter_startup_lines(text):
    """`text` without the lines matching `STARTUP_NOISE` (kept lines end with a newline)."""
    return "".join(line + "\n" for line in text.splitlines()
                   if line.strip() and not STARTUP_NOISE.search(line))


def import_tensorflow(quiet=True):
    """Imports TensorFlow (and lists its devices); returns the `tensorflow` module.

    With `quiet=False`, or when TensorFlow is already imported, this is a
    plain import. Otherwise stderr (file descriptor 2) is captured during the
    import and device initialisation only; captured lines other than the
    start-up notices of `STARTUP_NOISE` are written back to stderr.
    """
    if not quiet or "tensorflow" in sys.modules:
        import tensorflow as tf

        return tf
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, AttributeError, ValueError):  # no file descriptor 2 to redirect
        import tensorflow as tf

        return tf
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the cuInit notice comes here
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = filter_startup_lines(captured.read().decode("utf-8", errors="replace"))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()
    return tf
