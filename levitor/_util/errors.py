"""The one base class of levitor's own expected failures."""


class RunError(RuntimeError):
    """A run that cannot go on for a reason the user can fix (a launch that is not what the config asks for, a
    peer rank that failed, an engine that would not start); the message says what to do. The ``levitor`` command
    prints it in one line and exits with 2, as it does ValueErrors and OSErrors."""
