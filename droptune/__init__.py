"""droptune: drop a dataset into a bucket, get back a tuned model and its evaluation report."""

__version__ = "0.1.0"
