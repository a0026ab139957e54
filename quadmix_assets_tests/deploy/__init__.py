"""Deployment tests: Kubernetes manifests, a real API server, PostgreSQL, an S3-compatible server."""
