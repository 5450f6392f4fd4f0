"""Contract suites and test doubles that ship with tunesmith, in the manner of ``optuna.testing``.

A new storage, proposer, model backend or evaluator is tested by subclassing the matching contract
(``class TestMyStorage(StorageContract)``) and saying how to build one; pytest then runs every rule the
built-in implementations keep. These modules import pytest: use them from tests only.
"""
