"""The tasks known by name: `register(TaskSpec(...))` puts one in (the built-in ones in llava_cit/tasks/builtin.py);
a name registered twice is a one-line error. Finding a task by name or file: llava_cit.tasks.registry."""

from __future__ import annotations

from benchmarks.registry import DuplicateName, Registry
from llava_cit.tasks.spec import TaskSpec
from llava_cit.util.errors import UserError

TASKS: Registry[TaskSpec] = Registry("task")


def register(spec: TaskSpec) -> TaskSpec:
    """Register a task under its name (one line per built-in task); a name already taken is a one-line error."""
    try:
        return TASKS.add(spec.name, spec.validate())
    except DuplicateName as err:
        raise UserError(str(err)) from None
