"""The suite mirrors the package (tests/nets/, tests/data/, tests/dfi/, …). This file puts
tests/ itself on sys.path (pytest does so for a conftest.py's folder), so every test imports
the shared helpers here (tiny_bank, vgg_reference, fake_runs) by name."""
