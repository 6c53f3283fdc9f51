"""Measuring the event loop under test (its longest stall, told apart from waiting for a
CPU that other processes hold), peak memory, and percentiles: shared by the load tests
and the benchmarks.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any


def _runqueue_wait_ns() -> int:
    """Nanoseconds this thread has spent runnable but not running (waiting for a CPU)."""
    try:
        with open("/proc/thread-self/schedstat") as fh:
            return int(fh.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


class LoopStallMonitor:
    """A task that sleeps ``period`` in a loop and records how late it wakes up.

    Three views of the worst lateness:

    * ``max_stall``: the raw overshoot, wall clock.
    * ``max_own_stall``: minus the time the loop thread was runnable but waiting for a
      CPU (``/proc/thread-self/schedstat``): on a shared machine that part is other
      processes. What is left is this process: code on the loop, or the GIL held by
      another thread (or by a thread the OS preempted while it held the GIL).
    * ``max_busy_stall``: the part of a stall the loop thread spent *running* (its own
      CPU time): work done on the loop itself, e.g. model or index work called
      synchronously. GIL waits and preemption don't count here.

    A watchdog thread samples where the loop thread is whenever it is more than
    ``report_after`` late (``culprits``: stack summary -> samples).
    """

    def __init__(self, period: float = 0.005, report_after: float = 0.05) -> None:
        self.period = period
        self.report_after = report_after
        self.max_stall = 0.0
        self.max_own_stall = 0.0
        self.max_busy_stall = 0.0
        self.samples = 0
        self.own_stalls: list[float] = []  # every sample's own stall, for ratios
        self.max_gc_pause = 0.0  # longest garbage collection (any thread holds the GIL through it)
        self.gc_full_collections = 0
        self._gc_started: float | None = None
        self.culprits: dict[str, int] = {}
        self._beat = time.perf_counter()
        self._task: asyncio.Task | None = None
        self._stop = threading.Event()
        self._loop_thread = threading.get_ident()

    async def _run(self) -> None:
        while True:
            start, waited, cpu = time.perf_counter(), _runqueue_wait_ns(), time.thread_time()
            self._beat = start
            await asyncio.sleep(self.period)
            stall = time.perf_counter() - start - self.period
            own = stall - (_runqueue_wait_ns() - waited) / 1e9
            busy = min(stall, time.thread_time() - cpu)
            self.max_stall = max(self.max_stall, stall)
            self.max_own_stall = max(self.max_own_stall, own)
            self.max_busy_stall = max(self.max_busy_stall, busy)
            self.own_stalls.append(own)
            self.samples += 1

    def _watch(self) -> None:
        import sys
        import traceback

        while not self._stop.wait(self.report_after / 2):
            if time.perf_counter() - self._beat - self.period < self.report_after:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)[-4:]
            key = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(stack))
            self.culprits[key] = self.culprits.get(key, 0) + 1

    def share_over(self, threshold: float) -> float:
        """The fraction of samples whose own stall exceeded ``threshold`` seconds."""
        return sum(s > threshold for s in self.own_stalls) / max(1, len(self.own_stalls))

    def figures(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "max_loop_stall_ms": round(self.max_stall * 1000, 1),
            "max_own_loop_stall_ms": round(self.max_own_stall * 1000, 1),
            "max_busy_loop_stall_ms": round(self.max_busy_stall * 1000, 1),
            "p99_own_loop_stall_ms": round(percentile(self.own_stalls, 99) * 1000, 1) if self.own_stalls else 0.0,
            "max_gc_pause_ms": round(self.max_gc_pause * 1000, 1),
            "gc_full_collections": self.gc_full_collections,
            "share_own_over_100ms": round(self.share_over(0.1), 4),
        }

    def top_culprits(self, n: int = 5) -> list[tuple[str, int]]:
        return sorted(self.culprits.items(), key=lambda kv: -kv[1])[:n]

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started is not None:
            self.max_gc_pause = max(self.max_gc_pause, time.perf_counter() - self._gc_started)
            self.gc_full_collections += info.get("generation") == 2
            self._gc_started = None

    def __enter__(self) -> LoopStallMonitor:
        import gc

        gc.callbacks.append(self._on_gc)
        self._loop_thread = threading.get_ident()
        self._beat = time.perf_counter()
        self._task = asyncio.get_running_loop().create_task(self._run())
        threading.Thread(target=self._watch, name="loop-stall-watchdog", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        import gc

        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        self._stop.set()
        self._task.cancel()


class PeakRss:
    """The process's peak resident memory while the block runs: the kernel's high-water
    mark (``VmHWM``) reset on entry through ``/proc/self/clear_refs``, plus a sampling
    thread in case the reset isn't allowed. ``baseline`` is the RSS on entry."""

    def __init__(self, period: float = 0.02) -> None:
        self.period = period
        self.baseline = 0
        self.peak = 0
        self.kernel_reset = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _status(field_name: str) -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def _sample(self) -> None:
        while not self._stop.wait(self.period):
            self.peak = max(self.peak, self._status("VmRSS"))

    def __enter__(self) -> PeakRss:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # resets VmHWM to the current RSS
            self.kernel_reset = True
        except OSError:
            self.kernel_reset = False
        self.baseline = self.peak = self._status("VmRSS")
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1)
        self.peak = max(self.peak, self._status("VmRSS"))
        if self.kernel_reset:
            self.peak = max(self.peak, self._status("VmHWM"))

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    def figures(self) -> dict[str, Any]:
        mib = 1024 * 1024
        return {
            "rss_baseline_mib": round(self.baseline / mib, 1),
            "rss_peak_mib": round(self.peak / mib, 1),
            "rss_growth_mib": round(self.growth / mib, 1),
            "peak_from_kernel_high_water_mark": self.kernel_reset,
        }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = int(-(-len(ordered) * q // 100))  # ceil(n q / 100)
    return ordered[min(len(ordered) - 1, max(0, rank - 1))]
