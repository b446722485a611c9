"""Benchmarks: measured figures, never asserted. Run each from the checkout as
``python -m benchmarks.<name>`` (so ``tests.harness`` imports); see docs/testing.md."""
