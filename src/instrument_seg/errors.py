"""Errors that reach the user as one clear sentence."""


class InputError(Exception):
    """Bad input from the user: a file, directory, topic or value that cannot be used.

    The message is one sentence naming the offending file, topic or value. The CLI prints it
    after ``error:`` and exits with status 2; library callers can catch it.
    """
