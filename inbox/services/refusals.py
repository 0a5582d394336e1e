"""The error every inbox service raises for a request it refuses before anything changes.

A send, a session action, a note or an upload that cannot work as asked raises `SendRefused`
with a code for programs and a sentence for people; views and the API show the sentence.
"""

from __future__ import annotations


class SendRefused(Exception):
    """A message cannot be sent as asked; `code` is for programs, the text for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
