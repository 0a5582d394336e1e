"""MessageWhiz (mmdsmart omni API): client, schemas and provider (spec: reference/messagewhiz.md)."""
