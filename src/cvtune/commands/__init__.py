"""CLI command modules. Each defines `register(app)`; cli.py discovers them, so adding one touches one file."""
