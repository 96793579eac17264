"""User-facing errors: the CLI prints these as one line and exits non-zero."""


class KeySyncError(Exception):
    """A problem with the user's input, named together with its fix."""
