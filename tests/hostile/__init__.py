"""Hostile input: crafted files, threads, forked processes, out-of-domain values."""
