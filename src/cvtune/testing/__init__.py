"""Helpers for cvtune's own tests and benchmarks (real third-party models fetched from pinned packages)."""
