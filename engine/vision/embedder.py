"""Image → unit-length feature vector, fast and off the event loop.

One worker thread owns the model: every request (a chat photo, an ingest
batch) is queued to it, and requests that arrive together are run as one batch
(micro-batching). That keeps torch from fighting itself on a 2-core machine and
lets 50 simultaneous photos cost a few batches instead of 50 forward passes.
bf16 is used only where the CPU has native bf16 (AMX / AVX512-BF16), and only from
the stage on where its features agree with fp32 (engine/vision/precision.py): the first
stages stay fp32 when bf16 there would move the answer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from engine.vision.backbones import LoadedBackbone
from engine.vision.batch_rates import BatchRates, machine_key
from engine.vision.precision import PrecisionPlans, describe

log = logging.getLogger(__name__)
T = TypeVar("T")

BF16_MIN_COSINE = 0.999  # the promise: served features agree with fp32 at least this well
BF16_GATE = 0.9995  # what calibration pictures must reach: a margin over the promise for real photos
_BF16_VERDICTS: dict[tuple[str, int], int | None] = {}  # per backbone and weights, once per process
_SMALL_BATCH_FP32: dict[tuple[str, int], bool] = {}  # is fp32 faster for a lone photo? measured once
SMALL_BATCH = 2  # batches up to this size may run the fp32 model when it is the faster one
MAX_AUTO_BATCH = 32  # the largest batch start-up measures when the batch size is left to it
BATCH_TIE = 0.97  # a smaller batch within 3 % of the fastest wins: it starts sooner and fits caches


def cpu_has_native_bf16() -> bool:
    """True when the CPU executes bf16 matmuls natively (AMX or AVX512-BF16)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


def prepare(img: Image.Image, size: int) -> np.ndarray:
    """Letterbox onto a white square of ``size`` pixels (product photos are shot on
    white, and cropping would cut off sleeves and hems). Returns uint8 HWC."""
    w, h = img.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resample = Image.Resampling.BILINEAR if scale < 1 else Image.Resampling.BICUBIC
    resized = img.resize((nw, nh), resample, reducing_gap=2.0 if scale < 0.5 else None)
    if (nw, nh) == (size, size):
        return np.asarray(resized, dtype=np.uint8)
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(resized, ((size - nw) // 2, (size - nh) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def calibration_pictures(size: int) -> np.ndarray:
    """Pictures for the bf16 agreement check: smooth stripes and dark garment-like
    silhouettes with texture on white, like the product shots the engine sees."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    out = []
    for _ in range(4):
        fx, fy, phase = rng.uniform(0.01, 0.1), rng.uniform(0.01, 0.1), rng.uniform(0, 6)
        base = (np.sin(xx * fx + phase) + np.cos(yy * fy)) * 60 + 128
        out.append(np.stack([base, base[::-1], base[:, ::-1]], axis=-1))
    for _ in range(4):
        cx, cy = rng.uniform(0.4, 0.6, 2) * size
        rx, ry = rng.uniform(0.2, 0.4, 2) * size
        inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        texture = 90 + 50 * np.sin(xx * rng.uniform(0.1, 0.5)) * np.cos(yy * rng.uniform(0.1, 0.5))
        colour = rng.uniform(0.3, 1.0, 3)
        img = np.full((size, size, 3), 250.0)
        img[inside] = texture[inside][:, None] * colour
        out.append(img)
    return np.clip(np.stack(out), 0, 255).astype(np.uint8)


def fold_batch_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Fold each BatchNorm into the convolution before it (inference only): the same
    features (cosine > 0.99999) for fewer passes over memory. Falls back to the model
    as it is when it can't be traced."""
    import copy

    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(copy.deepcopy(model).eval())
    except Exception as err:
        log.info("batch-norm folding skipped: %s", err)
        return model


@dataclass
class _Job:
    pixels: np.ndarray  # (n, S, S, 3) uint8
    future: concurrent.futures.Future


@dataclass
class _Call:
    fn: Callable[[], object]
    future: concurrent.futures.Future


@dataclass
class _Grouped:
    """One item of work that may run together with others of the same ``key``: ``fn`` takes
    the gathered items and returns one result each (the garment scans of a burst of photos
    of one shape run as one batch)."""

    key: object
    item: object
    fn: Callable[[list[Any]], list[Any]]
    future: concurrent.futures.Future


class Embedder:
    """Runs a backbone in one worker thread with micro-batching."""

    def __init__(
        self,
        backbone: LoadedBackbone | Callable[[], LoadedBackbone],
        *,
        batch_size: int | None = None,
        precision: str = "auto",
        max_wait_ms: float = 4.0,
        threads: int | None = None,
        compile: bool = False,
        batch_rates_file: Path | None = None,
        runtime: str = "torch",
        runtime_cache_dir: Path | None = None,
    ) -> None:
        # A loader (``partial(load_model, settings)``) is called on the worker, so that even the
        # weights' loading runs there: see _settle for why one thread does all torch work.
        self.backbone: LoadedBackbone = backbone if isinstance(backbone, LoadedBackbone) else None  # type: ignore[assignment]
        self._remembered = BatchRates(batch_rates_file)
        self.requested_precision = precision
        # None: measured at start-up (_choose_batch_size); the cap also bounds compiled buckets.
        self.batch_size = batch_size or MAX_AUTO_BATCH
        self.batch_rates: dict[int, float] = {}  # images/s by batch size where measured
        self.max_wait = max_wait_ms / 1000.0
        self._compiled: Callable[..., torch.Tensor] | None = None
        self.buckets: tuple[int, ...] = ()
        self._last_arrival = 0.0
        self._answering = 0  # requests inside serving(): written under the lock, read by the worker
        self._answering_lock = threading.Lock()
        self._queue: queue.Queue[_Job | _Call | _Grouped | None] = queue.Queue()
        self._closed = False  # after close(), new work fails at once instead of waiting forever
        self.batches_run = 0  # for tests and benchmarks: how much micro-batching happened
        self.bf16_from: int | None = None
        self.small_batch_fp32 = False  # set by _settle where measured
        # torch, or OpenVINO where it is faster and agrees (engine/vision/runtimes.py): chosen in _settle.
        self._requested_runtime, self._runtime_cache_dir = runtime, runtime_cache_dir
        self.runtime, self.runtime_note = "torch", ""
        self._runtime_model: Callable[[np.ndarray], np.ndarray] | None = None
        self._runtime_plan: int | None = None
        self._worker = threading.Thread(target=self._run, name="embedder", daemon=True)
        self._worker.start()
        # Everything that runs torch (folding, layout, calibration, compilation) runs on the
        # worker: one thread, so one OpenMP team, does all of this embedder's torch work.
        try:
            self.call_on_worker(
                lambda: self._settle(backbone, threads, precision, compile, measure_batch=batch_size is None)
            ).result()
        except BaseException:
            self.close()
            raise

    def _settle(
        self,
        backbone: LoadedBackbone | Callable[[], LoadedBackbone],
        threads: int | None,
        precision: str,
        compile: bool,
        measure_batch: bool,
    ) -> None:
        # One thread runs all torch work of the process where it can (loading, folding,
        # calibration, inference, the garment finder's scan): each thread that enters a
        # parallel region gets its own OpenMP team, and with two teams on 2 cores libgomp
        # throttles its spinning, so every op's barrier sleeps and wakes: the same scan ran
        # 21 ms with one team and 55 ms with two (issue 19; bench/bench_served_garments.py).
        # set_num_threads is per thread under OpenMP: it must be called here, not by the caller.
        if threads:
            torch.set_num_threads(threads)
        if not isinstance(backbone, LoadedBackbone):
            self.backbone = backbone()
        self._mean = torch.tensor(self.backbone.mean).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(self.backbone.std).view(1, 3, 1, 1) * 255.0
        # The fp32 reference and, where the CPU has native bf16 and the features agree,
        # a mixed model: fp32 stem and first stages, bf16 after the cut (engine/vision/precision.py).
        self._plans = PrecisionPlans(self.backbone.model.eval(), fold_batch_norms)
        self.reference = self._plans.model(None)
        self.model = self.reference
        self.bf16_from = self._choose_plan(precision)
        if self.bf16_from is not None:
            self.model = self._plans.model(self.bf16_from)
            if precision == "auto" and not compile:
                key = (self.backbone.model_key, self.backbone.input_size)
                if key not in _SMALL_BATCH_FP32:
                    _SMALL_BATCH_FP32[key] = self._fp32_faster_alone()
                self.small_batch_fp32 = _SMALL_BATCH_FP32[key]
        # torch.compile (inductor, frozen weights: prepacked oneDNN convolutions with fused
        # bias/ReLU/add) for the chosen precision, one graph per batch-size bucket; batches
        # are padded up to their bucket. Opt-in: it costs ~20-30 s at start.
        if compile:
            self._compile()
        self._choose_runtime()
        if measure_batch:
            self.batch_size = self._choose_batch_size()

    @property
    def precision(self) -> str:
        if self._runtime_model is not None:
            return f"{describe(self._runtime_plan, self._plans.stages)} on OpenVINO"
        return describe(self.bf16_from, self._plans.stages)

    @property
    def bf16(self) -> bool:
        return self.bf16_from is not None

    @property
    def input_size(self) -> int:
        return self.backbone.input_size

    # ---- public API -------------------------------------------------------
    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Blocking: features for a stack of prepared images. Call from a worker thread."""
        return self.submit(pixels).result()

    def submit(self, pixels: np.ndarray) -> concurrent.futures.Future:
        if pixels.ndim == 3:
            pixels = pixels[None]
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._enqueue(_Job(pixels, future))
        return future

    async def embed_one(self, pixels: np.ndarray) -> np.ndarray:
        """Async: one prepared image → one unit vector; batched with its neighbours in time."""
        return (await asyncio.wrap_future(self.submit(pixels)))[0]

    @contextmanager
    def serving(self) -> Iterator[None]:
        """Marks one request being answered while inside (the service wraps a photo's
        answer in it). Why: a photo's answer makes three or four model calls a few
        milliseconds apart (the whole photo, the scan, the close look, the crops). By
        arrival times alone each looks like part of a burst and waited ``max_wait`` for
        company that could not come, about 16 ms of a lone user's 90 ms answer. While
        requests are marked, the worker waits for company only when another is being
        answered too."""
        with self._answering_lock:
            self._answering += 1
        try:
            yield
        finally:
            with self._answering_lock:
                self._answering -= 1

    def call_on_worker(self, fn: Callable[[], T]) -> concurrent.futures.Future:
        """Run ``fn`` on the model's thread, between batches. Torch work from a second thread
        brings up a second OpenMP thread team, and two teams on two cores slow each other
        (about 8 ms a batch-1 forward here); other torch work in this process goes here."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._enqueue(_Call(fn, future))
        return future

    def call_grouped(
        self, key: object, item: object, fn: Callable[[list[Any]], list[Any]]
    ) -> concurrent.futures.Future:
        """Run ``fn([item, …])`` on the model's thread, together with the items of other
        ``call_grouped`` requests of the same ``key`` that arrive within the micro-batch
        wait (up to ``batch_size`` of them); the future gets this item's result."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._enqueue(_Grouped(key, item, fn, future))
        return future

    def _enqueue(self, work: _Job | _Call | _Grouped) -> None:
        if self._closed:
            work.future.set_exception(RuntimeError("the embedder is closed"))
            return
        self._queue.put(work)

    def close(self) -> None:
        """Stop the worker after the work already queued; anything still queued when it has
        gone (it was stuck, or work raced the close) fails instead of leaving its caller
        awaiting a future nothing will resolve."""
        self._closed = True
        self._queue.put(None)
        self._worker.join(timeout=10)
        if self._worker.is_alive():  # busy past the wait: it fails or finishes what it holds
            log.warning("embedder: the worker is still busy at close; its queued work stays with it")
            return
        while True:
            try:
                work = self._queue.get_nowait()
            except queue.Empty:
                return
            if work is not None and work.future.set_running_or_notify_cancel():
                work.future.set_exception(RuntimeError("the embedder closed before this work ran"))

    # ---- model ------------------------------------------------------------
    def forward(self, pixels: np.ndarray, *, reference: bool = False) -> np.ndarray:
        """Features for uint8 NHWC pixels, L2-normalised, float32. ``reference``: the plain
        fp32 model (what agreement is measured against)."""
        if self._runtime_model is not None and not reference:
            raw = self._runtime_model(pixels)
            return raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12)
        n = len(pixels)
        model: Callable[..., torch.Tensor] = (
            self.reference if reference or (n <= SMALL_BATCH and self.small_batch_fp32) else self.model
        )
        if self._compiled is not None and not reference and n <= self.buckets[-1]:
            model = self._compiled
            bucket = next(b for b in self.buckets if b >= n)
            if bucket - n > bucket // 4:  # padding would waste over a quarter: split instead
                below = max(b for b in self.buckets if b <= n)  # e.g. 17 = 16 + 1, not 32
                return np.concatenate([self.forward(pixels[:below]), self.forward(pixels[below:])])
            if bucket > n:  # pad to the bucket's shape (eval mode: rows are independent)
                pixels = np.concatenate([pixels, np.zeros((bucket - n, *pixels.shape[1:]), dtype=pixels.dtype)])
        x = self._normalise(pixels)
        with torch.inference_mode():
            feats = model(x)[:n]
        feats = torch.nn.functional.normalize(feats.float(), dim=1)
        return feats.numpy().astype(np.float32, copy=False)

    def _compile(self) -> None:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True  # weights become constants: prepacked, folded
        # Every embedder's StagedModel.forward is one code object to dynamo, and each bucket
        # of each embedder is one more graph of it: lift the default limit (8) so a second
        # compiled embedder in the process doesn't silently fall back to eager.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        self.buckets = tuple(sorted({b for b in (1, 2, 4, 8, 16, 32) if b < self.batch_size} | {self.batch_size}))
        compiled = torch.compile(self.model, dynamic=False)
        size = self.input_size
        try:
            started = time.monotonic()
            for b in self.buckets:  # compile every bucket now, not on a user's request
                x = torch.zeros(b, 3, size, size).contiguous(memory_format=torch.channels_last)
                with torch.inference_mode():
                    compiled(x)
        except Exception as err:
            log.warning("torch.compile failed, running eagerly: %s", err)
            self.buckets = ()
            return
        self._compiled = compiled
        log.info(
            "compiled %s (%s) for batch sizes %s in %.0f s",
            self.backbone.name,
            self.precision,
            self.buckets,
            time.monotonic() - started,
        )

    def _choose_runtime(self) -> None:
        """Torch or OpenVINO for the forward pass, by agreement and measurement, on this thread."""
        if self._requested_runtime == "torch":
            return
        from engine.vision import runtimes

        pictures = calibration_pictures(self.input_size)
        model, plan, self.runtime_note = runtimes.choose(
            self._requested_runtime,
            plans=self._plans,
            mean=self._mean,
            std=self._std,
            model_key=self.backbone.model_key,
            input_size=self.input_size,
            bf16_from=self.bf16_from,
            cache_dir=self._runtime_cache_dir,
            pictures=pictures,
            reference=self.forward(pictures, reference=True),
            torch_forward=self.forward,
            gate=BF16_GATE,
            torch_key=f"{self.precision} {'compiled' if self.buckets else 'eager'} {self.small_batch_fp32}",
        )
        self._runtime_model, self._runtime_plan = model, plan
        self.runtime = "openvino" if model is not None else "torch"
        log.info("runtime: %s", self.runtime_note)

    def _fp32_faster_alone(self) -> bool:
        """Keep what pays: eager bf16 is slower than fp32 for a single image on some models
        (EfficientNet-Lite0 here: 38 against 84 images/s; its depthwise convolutions), though
        faster batched. Timed once at start-up, on the calibration pictures."""
        x = self._normalise(calibration_pictures(self.backbone.input_size)[:1])

        def best_of(model: torch.nn.Module) -> float:
            times = []
            with torch.inference_mode():
                model(x)
                for _ in range(3):
                    t0 = time.perf_counter()
                    model(x)
                    times.append(time.perf_counter() - t0)
            return min(times)

        fp32, mixed = best_of(self.reference), best_of(self.model)
        log.info("one image: fp32 %.1f ms, %s %.1f ms", fp32 * 1e3, self.precision, mixed * 1e3)
        return fp32 < mixed

    def _choose_batch_size(self) -> int:
        """Batch size chosen by measurement: the one with the most images a second, served
        path and all (normalisation, plan, compiled buckets). Bigger is not faster here:
        the mixed ResNet-50, compiled, ran 80 images/s at batch 8 against 65 at 32 on 2
        cores (activations stop fitting in cache), and micro-batches of the faster size
        also start sooner. Measured once per model, plan and machine (engine/vision/batch_rates.py)."""
        key = "|".join(
            map(
                str,
                (
                    self.backbone.model_key,
                    self.input_size,
                    self.precision,
                    self.small_batch_fp32,
                    "compiled" if self.buckets else "eager",
                    f"cap {self.batch_size}",
                    machine_key(),
                ),
            )
        )
        rates = self._remembered.get(key)
        if rates is None:
            rates = self._measure_batch_rates()
            self._remembered.put(key, rates)
        self.batch_rates = rates
        best = max(self.batch_rates.values())
        chosen = min(b for b, r in self.batch_rates.items() if r >= BATCH_TIE * best)
        log.info(
            "batch size %d chosen by measurement (images/s: %s)",
            chosen,
            ", ".join(f"{b}: {r:.0f}" for b, r in self.batch_rates.items()),
        )
        return chosen

    def _measure_batch_rates(self, rounds: int = 3) -> dict[int, float]:
        """Images/s at 1, 2, 4 … up to the cap, best of ``rounds``. The rounds interleave the
        sizes, so a passing load on the machine hits them alike rather than one size."""
        pictures = calibration_pictures(self.input_size)
        stacks: dict[int, np.ndarray] = {}
        size = 1
        while size <= self.batch_size:
            stacks[size] = pictures[np.arange(size) % len(pictures)]
            size *= 2
        best: dict[int, float] = {}
        for round_ in range(rounds):
            for size, x in stacks.items():
                if round_ == 0:
                    self.forward(x)  # the first call of a shape builds its kernels
                t0 = time.perf_counter()
                self.forward(x)
                best[size] = min(best.get(size, float("inf")), time.perf_counter() - t0)
                if round_ == 0 and size / best[size] < 0.9 * max(b / t for b, t in best.items()):
                    break  # clearly past the best: bigger batches only get slower
            stacks = {size: stacks[size] for size in best}
        return {size: size / t for size, t in best.items()}

    def _normalise(self, pixels: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.require(pixels, requirements=["C", "W"])).permute(0, 3, 1, 2).float()
        return ((x - self._mean) / self._std).contiguous(memory_format=torch.channels_last)

    def _choose_plan(self, precision: str) -> int | None:
        """Where bf16 starts (None: nowhere)."""
        if precision == "fp32":
            return None
        if precision == "bf16":
            return 0
        if not cpu_has_native_bf16():
            log.info("No native bf16 on this CPU: embedding in fp32.")
            return None
        key = (self.backbone.model_key, self.backbone.input_size)
        if key not in _BF16_VERDICTS:
            _BF16_VERDICTS[key] = self._calibrate()
        return _BF16_VERDICTS[key]

    def _calibrate(self) -> int | None:
        """The most-bf16 cut whose features agree with fp32 on calibration pictures."""
        stack = calibration_pictures(self.backbone.input_size)
        ref = self.forward(stack, reference=True)
        tried = []
        for k in self._plans.candidates():
            model = self._plans.model(k)
            x = self._normalise(stack)
            with torch.inference_mode():
                got = torch.nn.functional.normalize(model(x).float(), dim=1).numpy()
            cos = float(np.min(np.sum(ref * got, axis=1)))
            tried.append(f"{describe(k, self._plans.stages)}: {cos:.5f}")
            if cos >= BF16_GATE:
                log.info(
                    "bf16 agrees with fp32 (min cosine %.5f) from stage %d of %d; tried %s",
                    cos,
                    k,
                    self._plans.stages,
                    "; ".join(tried),
                )
                return k
        log.warning("bf16 disagrees with fp32 at every cut (%s): embedding in fp32.", "; ".join(tried))
        return None

    # ---- worker -----------------------------------------------------------
    def _run(self) -> None:
        carried: _Job | _Call | _Grouped | None = None
        while True:
            job = carried if carried is not None else self._queue.get()
            carried = None
            if job is None:
                return
            if isinstance(job, _Call):
                self._call(job)
                continue
            pending: list[Any] = [job]
            count = len(job.pixels) if isinstance(job, _Job) else 1
            now = time.monotonic()
            # A lone request on an idle engine runs at once; when requests come in a burst,
            # gather whatever else of the same kind arrives within max_wait, up to a full
            # batch. A burst: others are already queued, or another marked request is being
            # answered (serving), or, for unmarked work, the previous job arrived within
            # 50 ms. Work of another kind ends the gathering and runs next, in arrival order.
            answering = self._answering
            company = answering > 1 if answering else now - self._last_arrival < 0.05
            bursty = company or not self._queue.empty()
            self._last_arrival = now
            deadline = now + (self.max_wait if bursty else 0.0)
            while count < self.batch_size:
                timeout = deadline - time.monotonic()
                try:
                    nxt = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                if isinstance(job, _Job) and isinstance(nxt, _Job):
                    pending.append(nxt)
                    count += len(nxt.pixels)
                elif isinstance(job, _Grouped) and isinstance(nxt, _Grouped) and nxt.key == job.key:
                    pending.append(nxt)
                    count += 1
                else:
                    carried = nxt
                    break
            if isinstance(job, _Job):
                self._process(pending)
            else:
                self._process_group(pending)

    @staticmethod
    def _call(call: _Call) -> None:
        if not call.future.set_running_or_notify_cancel():
            return
        try:
            call.future.set_result(call.fn())
        except BaseException as err:
            call.future.set_exception(err)

    @staticmethod
    def _process_group(jobs: list[_Grouped]) -> None:
        live = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            results = list(live[0].fn([j.item for j in live]))
        except BaseException as err:  # never kill the worker: fail these calls only
            for j in live:
                j.future.set_exception(err)
            return
        if len(results) != len(live):  # every caller gets an answer, never a future left pending
            short = RuntimeError(f"grouped call returned {len(results)} results for {len(live)} items")
            for j in live:
                j.future.set_exception(short)
            return
        for j, result in zip(live, results):
            j.future.set_result(result)

    def _process(self, jobs: list[_Job]) -> None:
        live = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            stack = np.concatenate([j.pixels for j in live]) if len(live) > 1 else live[0].pixels
            out = np.concatenate(
                [self.forward(stack[i : i + self.batch_size]) for i in range(0, len(stack), self.batch_size)]
            )
            self.batches_run += 1
        except Exception as err:  # never kill the worker: fail these jobs only
            log.exception("embedding failed")
            for j in live:
                j.future.set_exception(err)
            return
        start = 0
        for j in live:
            n = len(j.pixels)
            j.future.set_result(out[start : start + n])
            start += n
