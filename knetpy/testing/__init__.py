"""Tools for testing code built on knetpy (``knetpy.testing.strict``: a CPU stand-in for a GPU library)."""
