"""Everything that reads or writes tables, files and the model registry."""
