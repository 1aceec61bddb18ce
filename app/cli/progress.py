"""Progress bars on stderr for long copies, so stdout stays just the answer (the new id)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from app.services.images.disk_images import ProgressCallback


@contextmanager
def copy_progress() -> Iterator[ProgressCallback]:
    """Yields a callback that draws one bar per phase ("copying", "converting"). When the
    work fails the bars are cleared, so the error is the one line left."""
    console = Console(stderr=True)
    columns = [
        TextColumn("{task.description:>10}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
    ]
    tasks: dict[str, TaskID] = {}
    with Progress(*columns, console=console) as progress:

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(phase, total=total)
            progress.update(tasks[phase], completed=done, total=total)

        try:
            yield update
        except BaseException:
            progress.live.transient = True
            raise
