"""Tests of convert and load under concurrency and faults."""
