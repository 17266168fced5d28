"""Typer CLI: one module per command group, joined in main.py."""
