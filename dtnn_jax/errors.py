"""The one base class of errors that are the user's to fix, not the library's.

Every problem with what a user gave (a structure file, labelled data, a bundle, a band-gap
table, a run directory, a setting) raises a subclass of `InputError` whose message names
the input and says what is wrong. The command line prints that message and exits with
status 2; anything else is a bug and keeps its traceback.
"""


class InputError(ValueError):
    """A problem with the user's input; the message says what and where."""
