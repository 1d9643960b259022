"""Whether the emulator's server packages (the ``vuq[emulator]`` extra) are installed.

Workers, producers, Flower and beat install without them; ``vuq emulator`` and
``python -m emulator`` check here first and say what to install, in one line.
"""

from __future__ import annotations

from importlib.util import find_spec

# import names of the packages the `emulator` extra brings (python-multipart imports as multipart)
SERVER_MODULES = ("starlette", "uvicorn", "multipart", "httptools")
INSTALL_HINT = "install the emulator extra: pip install 'vuq[emulator]'"


def missing_server_package() -> str | None:
    """The first server package that cannot be imported, or None when the extra is installed."""
    return next((name for name in SERVER_MODULES if find_spec(name) is None), None)


def missing_message() -> str | None:
    """One line for the user when the extra is missing, else None."""
    missing = missing_server_package()
    return f"the emulator needs {missing}, which is not installed: {INSTALL_HINT}" if missing else None
