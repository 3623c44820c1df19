"""The project's one error family.

Every error that quantum-slm raises on purpose (bad input, a spec mistake, a store that cannot be reached, a
gate that cannot be evaluated) derives from QslmError and carries a message that names the file or value and
the fix. Entry points catch QslmError alone and print `<stage>: error: <message>`; anything else keeps its
traceback, because it is a bug.
"""

from __future__ import annotations


class QslmError(Exception):
    """An expected failure; the message says what is wrong, where, and how to fix it."""
