"""Chaos suite: Hypothesis-generated adversarial input through the real pipeline, a worker SIGKILL
mid-run, re-sends, and the pipeline's invariants checked afterwards (see test_chaos.py)."""
