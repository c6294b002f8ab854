"""Executors run jobs: local processes (default) or a Ray cluster, behind one interface."""

from kahu.flow.executors.base import Executor, Outcome

__all__ = ["Executor", "Outcome"]
