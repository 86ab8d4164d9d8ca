"""Thin npe2 adapters (reader, writers, sample data) over io/ and simulate."""
