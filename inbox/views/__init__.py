"""The agent pages: sign-in, the three-pane inbox, and what its forms post to."""
