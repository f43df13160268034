"""Datasets: loaders for the layouts users have, robust image reading, seeded splits, a synthetic text set."""
