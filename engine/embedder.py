"""Image → unit-length feature vector, fast and off the event loop.

One worker thread owns the model: every request (a chat photo, an ingest
batch) is queued to it, and requests that arrive together are run as one batch
(micro-batching). That keeps torch from fighting itself on a 2-core machine and
lets 50 simultaneous photos cost a few batches instead of 50 forward passes.
bf16 autocast is used only where the CPU has native bf16 (AMX / AVX512-BF16) and
only after checking that its features agree with fp32 (cosine >= 0.999).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from engine.backbones import LoadedBackbone

log = logging.getLogger(__name__)

BF16_MIN_COSINE = 0.999
_BF16_VERDICTS: dict[tuple[str, str, int], bool] = {}  # per backbone and weights, once per process


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


def fold_batch_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Fold each BatchNorm into the convolution before it (inference only): the same
    features (cosine > 0.99999) for fewer passes over memory. Falls back to the model
    as it is when it can't be traced."""
    import copy

    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(copy.deepcopy(model).eval())
    except Exception as err:  # noqa: BLE001 - an untraceable model still works unfused
        log.info("batch-norm folding skipped: %s", err)
        return model


@dataclass
class _Job:
    pixels: np.ndarray  # (n, S, S, 3) uint8
    future: concurrent.futures.Future


class Embedder:
    """Runs a backbone in one worker thread with micro-batching."""

    def __init__(
        self,
        backbone: LoadedBackbone,
        *,
        batch_size: int = 32,
        precision: str = "auto",
        max_wait_ms: float = 4.0,
        threads: int | None = None,
        compile: bool = False,
    ) -> None:
        self.backbone = backbone
        self.batch_size = batch_size
        self.max_wait = max_wait_ms / 1000.0
        if threads:
            torch.set_num_threads(threads)
        self.model = fold_batch_norms(backbone.model.eval()).to(memory_format=torch.channels_last)
        self._mean = torch.tensor(backbone.mean).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(backbone.std).view(1, 3, 1, 1) * 255.0
        self._compiled = None
        self.buckets: tuple[int, ...] = ()
        self.bf16 = self._choose_bf16(precision)
        # torch.compile (inductor, frozen weights: prepacked oneDNN convolutions with fused
        # bias/ReLU/add) for the chosen precision, one graph per batch-size bucket; batches
        # are padded up to their bucket. Opt-in: it costs ~30 s plus ~7 s a bucket at start.
        if compile:
            self._compile()
        self._last_arrival = 0.0
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="embedder", daemon=True)
        self._worker.start()
        self.batches_run = 0  # for tests and benchmarks: how much micro-batching happened

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp32"

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
        self._queue.put(_Job(pixels, future))
        return future

    async def embed_one(self, pixels: np.ndarray) -> np.ndarray:
        """Async: one prepared image → one unit vector; batched with its neighbours in time."""
        return (await asyncio.wrap_future(self.submit(pixels)))[0]

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=10)

    # ---- model ------------------------------------------------------------
    def forward(self, pixels: np.ndarray, bf16: bool | None = None) -> np.ndarray:
        """Features for uint8 NHWC pixels, L2-normalised, float32."""
        use_bf16 = self.bf16 if bf16 is None else bf16
        n = len(pixels)
        model = self.model
        if self._compiled is not None and use_bf16 == self.bf16 and n <= self.buckets[-1]:
            model = self._compiled
            bucket = next(b for b in self.buckets if b >= n)
            if bucket > n:  # pad to the bucket's shape (eval mode: rows are independent)
                pixels = np.concatenate([pixels, np.zeros((bucket - n, *pixels.shape[1:]), dtype=pixels.dtype)])
        x = torch.from_numpy(np.require(pixels, requirements=['C', 'W'])).permute(0, 3, 1, 2).float()
        x = ((x - self._mean) / self._std).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            feats = model(x)[:n]
        feats = torch.nn.functional.normalize(feats.float(), dim=1)
        return feats.numpy().astype(np.float32, copy=False)

    def _compile(self) -> None:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True  # weights become constants: prepacked, folded
        self.buckets = tuple(sorted({b for b in (1, 2, 4, 8, 16, 32) if b < self.batch_size} | {self.batch_size}))
        compiled = torch.compile(self.model, dynamic=False)
        size = self.input_size
        try:
            started = time.monotonic()
            for b in self.buckets:  # compile every bucket now, not on a user's request
                x = torch.zeros(b, 3, size, size).contiguous(memory_format=torch.channels_last)
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                    compiled(x)
        except Exception as err:  # noqa: BLE001 - no compiler, unsupported op: run eagerly
            log.warning("torch.compile failed, running eagerly: %s", err)
            self.buckets = ()
            return
        self._compiled = compiled
        log.info("compiled %s (%s) for batch sizes %s in %.0f s", self.backbone.name, self.precision,
                 self.buckets, time.monotonic() - started)

    def _choose_bf16(self, precision: str) -> bool:
        if precision == "fp32":
            return False
        if precision == "bf16":
            return True
        if not cpu_has_native_bf16():
            log.info("No native bf16 on this CPU: embedding in fp32.")
            return False
        key = (self.backbone.name, self.backbone.fingerprint, self.backbone.input_size)
        if key not in _BF16_VERDICTS:
            _BF16_VERDICTS[key] = self._bf16_agrees()
        return _BF16_VERDICTS[key]

    def _bf16_agrees(self) -> bool:
        # Check agreement on structured test images (stripes and blobs, not noise).
        rng = np.random.default_rng(0)
        size = self.backbone.input_size
        yy, xx = np.mgrid[0:size, 0:size]
        probes = []
        for _ in range(4):
            fx, fy, phase = rng.uniform(0.01, 0.1), rng.uniform(0.01, 0.1), rng.uniform(0, 6)
            base = (np.sin(xx * fx + phase) + np.cos(yy * fy)) * 60 + 128
            img = np.stack([base, base[::-1], base[:, ::-1]], axis=-1)
            probes.append(np.clip(img, 0, 255).astype(np.uint8))
        stack = np.stack(probes)
        cos = float(np.min(np.sum(self.forward(stack, bf16=False) * self.forward(stack, bf16=True), axis=1)))
        if cos >= BF16_MIN_COSINE:
            log.info("bf16 features agree with fp32 (min cosine %.5f): using bf16.", cos)
            return True
        log.warning("bf16 features disagree with fp32 (min cosine %.5f): using fp32.", cos)
        return False

    # ---- worker -----------------------------------------------------------
    def _run(self) -> None:
        pending: list[_Job] = []
        while True:
            job = self._queue.get()
            if job is None:
                return
            pending = [job]
            count = len(job.pixels)
            now = time.monotonic()
            # A lone request on an idle engine runs at once; when requests come in a burst
            # (the previous one arrived within 50 ms, or others are already queued), gather
            # whatever else arrives within max_wait, up to a full batch.
            bursty = now - self._last_arrival < 0.05 or not self._queue.empty()
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
                pending.append(nxt)
                count += len(nxt.pixels)
            self._process(pending)

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
