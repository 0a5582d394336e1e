"""Mehery XMS: the first platform. Spec: ../shared/reference/mehery-xms.md."""
