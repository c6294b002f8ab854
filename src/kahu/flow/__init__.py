"""Workflows: DAGs of operators run on cohorts. The public API for workflow authors::

from kahu.flow import Workflow, Output, python_operator, command_operator, TaskContext
"""

from kahu.flow.job import TaskContext
from kahu.flow.model import (
    Operator,
    Output,
    Resources,
    Workflow,
    application_operator,
    command_operator,
    container_operator,
    internal_operator,
    python_operator,
)

__all__ = [
    "Operator",
    "Output",
    "Resources",
    "TaskContext",
    "Workflow",
    "application_operator",
    "command_operator",
    "container_operator",
    "internal_operator",
    "python_operator",
]
