"""``s3l prep``: fairseq-compatible manifests for real corpora (one module per corpus, shared logic in common)."""
