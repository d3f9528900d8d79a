"""Built-in synthetic speech corpus (espeak-ng)."""
