"""Helpers of the example and command-line tests: optional modules, data folders kept to the test."""


def has(module):
    """Whether ``module`` (an optional dependency) imports."""
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def no_downloads(tmp_path, monkeypatch):
    """No test may download into (or read from) the user's cache: a cache in ``tmp_path``, no $KNETPY_DATA."""
    monkeypatch.setenv("KNETPY_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KNETPY_DATA", raising=False)
