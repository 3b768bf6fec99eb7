"""Stop a training run cleanly on SIGTERM / SIGINT.

A cluster scheduler (or Ctrl-C) sends SIGTERM / SIGINT; the handler only records the
signal, so the step in flight finishes, the trainer writes a checkpoint and raises
TrainingInterrupted; running the same command again resumes from that checkpoint. A
second signal while the first is being handled stops at once (the default action), for a
user who really wants out.
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(RuntimeError):
    """The run stopped on a signal after writing a checkpoint; the exit code is 128 + signum."""

    def __init__(self, signum: int, step: int, checkpoint: str):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint "
                         f"{checkpoint} written - run the same command again to resume")


class StopRequest:
    """Context manager: while active, SIGTERM / SIGINT set `signum` instead of killing."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        # Python delivers signals to the main thread only; elsewhere (a trainer in a worker
        # thread) the default handling stays.
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:  # the second signal: give up waiting for the step
            self.__exit__(None, None, None)
            signal.raise_signal(signum)
            return
        self.signum = signum
        print(f"\n{signal.Signals(signum).name} received: finishing this step, then writing a "
              "checkpoint (send it again to stop at once)", flush=True)

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
