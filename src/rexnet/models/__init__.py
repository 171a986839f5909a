"""Modules built from NetSpecs, the named model zoo and checkpoint formats."""
