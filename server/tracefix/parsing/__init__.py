"""Parsing: tree-sitter documents, symbols and symbol-level diffs."""
