"""Behaviour that every implementation of a seam must share, real or in-memory.

Unit tests run these suites against the in-memory doubles; integration tests run the very
same suites against Kafka and Redis, so the doubles cannot drift from the real thing.
"""
