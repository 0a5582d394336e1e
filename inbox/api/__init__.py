"""The REST API for integrators, mounted at /api/v1/ (see README, "REST API")."""
