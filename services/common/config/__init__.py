"""Config models (one module per section) and the YAML loader they share."""
