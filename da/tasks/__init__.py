"""Tasks by name (classification, segmentation2d, segmentation3d). Every module in this
package registers itself on import: a new task is one new file."""

import importlib
import pkgutil

from da.tasks.base import TASKS, CloudSummary, Task, TaskUnsupported, register_task, task_of

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["TASKS", "CloudSummary", "Task", "TaskUnsupported", "register_task", "task_of"]
