"""Adapters over Google Cloud client libraries. Only this package imports cloud SDKs."""
