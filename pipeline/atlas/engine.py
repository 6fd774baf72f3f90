"""Where an atlas's work runs: in this process (`InProcess`, the default) or on Ray (`RayEngine`).

Both engines run the same three stages through the same functions, only placed differently:

1. **Pass 1** (`pipeline.atlas.pass1.scan`) over shards of the corpus. In process the corpus is one
   shard. On Ray the driver streams the corpus once through the tokenizer alone (cheap next to the
   model; `plan_corpus`), keeping no text: the token count, the `max_tokens` cut and a bounded set
   of places where a shard may end. It cuts the corpus into contiguous runs of documents of about
   equal token counts, each named by its document indices only (`Shard`: the worker reads its own
   documents), and Ray Data runs `map_batches` over the shards on an actor pool: each
   actor loads the model and the SAE once (`num_gpus=1` per actor when the cluster has GPUs, else
   `num_cpus=0.5`: on a 2-core machine actors asking for whole CPUs leave none to Ray Data's read
   tasks, and both wait on each other for ever). The shards' results are reduced with `merge_results`
   as they arrive, into the running result in place: the driver holds the running buffer and the one
   arriving, whatever the number of shards or the corpus size. Top-N merging is associative and
   commutative: the best N of a union of token sets is the best N of the parts' best N under one
   total order (activation descending, then token key ascending, and keys are unique), and the
   counts and histograms add; so shard order and grouping never change the result.
2. **Pass 2** (`pipeline.atlas.pass2.materialise`) over the documents that hold a selected token,
   sharded by document the same way (a second streamed plan, of those documents alone); the parts
   join (`pass2.join`) as they arrive and the driver assembles the `HarvestResult`.
3. **Per-latent map builds** (`pipeline.atlas.maps.build_latent`): in process one after another; on
   Ray as tasks. Ray reuses worker processes between tasks, so each worker pays UMAP's numba JIT
   (15-45 s) once, not once per latent. A task whose worker dies is retried (`max_retries`), and a
   pass-1 or pass-2 shard whose actor dies is run again on a restarted actor (Ray Data's defaults for
   actor pools: `max_restarts=-1`, `max_task_retries=-1`).

Ray's logs stay out of the terminal: `log_to_driver=False`, the `ray` and `ray.data` loggers at
WARNING with Ray Data's console handler removed and its progress bars off, and the driver's own C++
log lines (written straight to file descriptor 2) sent to a log file while the engine is open,
Python's `sys.stderr` (our progress display) keeping the terminal.

ray and torch are imported inside functions: `--help` and config checks must not pay for them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import socket
import sys
import tempfile
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from pipeline.atlas.config import AtlasHarvestConfig
from pipeline.atlas.maps import MapJob, MapOutcome, build_latent, fail_once, unbuilt_row, with_error
from pipeline.corpus import Document, iter_documents
from pipeline.harvest.batches import sort_window
from pipeline.harvest.config import HarvestError
from pipeline.harvest.result import HarvestResult
from pipeline.models import LoadedModel, first_line
from pipeline.steps import Progress, no_progress

SHARDS_PER_WORKER = 4
"""Pass shards per actor: enough that the progress moves and a lost actor's retry redoes little."""
CONNECT_TIMEOUT_S = 5.0
"""How long `--ray-address` may take to answer a TCP connect before it counts as unreachable."""
GPU_RESOURCE = "GPU"


class EngineError(ValueError):
    """An engine that cannot start (Ray missing, a cluster that does not answer); one line for the user."""


class StageReporter(Protocol):
    """Given (stage, description) returns the Progress callback of that stage (`pipeline.build.StepReporter`)."""

    def __call__(self, step: str, description: str) -> Progress: ...


@dataclass(frozen=True)
class Shard:
    """A contiguous run of the corpus's documents, by index (the worker reads them itself: no text travels),
    with the token cap pass 1 applies to it."""

    index: int
    start: int
    """The index of its first document."""
    stop: int
    """One past the index of its last document."""
    n_tokens: int
    """Real tokens the pass will harvest from it (the cap included)."""
    n_documents: int
    """Documents of it that give tokens (pass 2: that hold a selected token)."""
    max_tokens: int | None = None
    """The cap of the shard where `max_tokens` cuts the corpus (None for every other)."""

    def documents(self, cfg: AtlasHarvestConfig) -> Iterator[tuple[int, Document]]:
        """Its (document index, document) pairs, streamed from the corpus (the documents before it are read and
        skipped: reading costs little next to the model)."""
        return itertools.islice(enumerate(iter_documents(cfg.corpus, cfg.text_field)), self.start, self.stop)


class Engine(Protocol):
    """What `build_atlas` asks of an engine."""

    name: str

    def harvest(self, cfg: AtlasHarvestConfig, report: StageReporter) -> HarvestResult:
        """Pass 1 and pass 2 over the corpus: every requested latent's harvest."""
        ...

    def build_maps(self, jobs: Sequence[MapJob]) -> Iterator[MapOutcome]:
        """Each job's outcome, as the builds finish (in any order)."""
        ...

    def close(self) -> None:
        """Let go of what the engine holds (a Ray instance it started)."""
        ...


# -- the stages, engine-agnostic ---------------------------------------------------------------


def load_pair(cfg: AtlasHarvestConfig) -> tuple[LoadedModel, Any]:
    """The model and SAE of `cfg`, checked against each other and the latents (HarvestError, one line, before
    any corpus is read)."""
    from pipeline.atlas.harvest import prepare
    from pipeline.atlas.pass1 import open_hook

    model, sae = prepare(cfg)
    _, _, d_sae = open_hook(model, sae, cfg.hook, cfg.max_length)
    cfg.resolve_latents(d_sae)
    return model, sae


def run_pass1_shard(cfg: AtlasHarvestConfig, shard: Shard, model: LoadedModel, sae: Any, progress: Progress) -> Any:
    """Pass 1 over one shard (its own token cap), as both engines run it."""
    from pipeline.atlas.pass1 import scan

    return scan(replace(cfg, max_tokens=shard.max_tokens), shard.documents(cfg), model, sae, progress=progress)


class InProcess:
    """Every stage in this process, one after the other: the default, and the reference Ray is tested against."""

    name = "in-process"

    def harvest(self, cfg: AtlasHarvestConfig, report: StageReporter) -> HarvestResult:
        """Pass 1 over the whole corpus (one shard, `max_tokens` applied by the scan), then pass 2."""
        from pipeline.atlas.harvest import harvest_in_process

        model, sae = load_pair(cfg)
        return harvest_in_process(
            cfg, report("pass1", PASS1), model, sae, pass2_progress=lambda: report("pass2", PASS2)
        )

    def build_maps(self, jobs: Sequence[MapJob]) -> Iterator[MapOutcome]:
        """The builds one after another (the first pays UMAP's JIT)."""
        for job in jobs:
            yield _outcome_or_error(job)

    def close(self) -> None:
        """Nothing to let go of."""


PASS1 = "pass 1: every latent's top-N and statistics"
PASS2 = "pass 2: windows and codes of the selected tokens"


def _outcome_or_error(job: MapJob) -> MapOutcome:
    """`build_latent`, with an error that is the build's own turned into the latent's row."""
    try:
        return build_latent(job)
    except (ValueError, OSError, RuntimeError, MemoryError) as error:
        return failed_outcome(job, f"map build failed: {first_line(error)}")


def failed_outcome(job: MapJob, error: str) -> MapOutcome:
    """The row of a latent whose build failed: its harvest's figures where they can be read, and why."""
    from pipeline import harvest

    try:
        result = harvest.load(job.harvest_dir)
        row = unbuilt_row(result.latents[job.latent], result.n_tokens_seen, error)
    except (HarvestError, KeyError, OSError):
        from vista_tui.mapdata import LatentRow

        row = LatentRow(latent=job.latent, density=float("nan"), n_fired=0, max_activation=float("nan"), n_contexts=0)
    return MapOutcome(with_error(row, error))


# -- sharding ---------------------------------------------------------------------------------


MAX_CANDIDATES = 1024
"""Most places a shard may end that a plan keeps (thinned evenly as the corpus streams): its memory is bounded."""


@dataclass(frozen=True)
class CorpusPlan:
    """The corpus as a pass will read it, summed up as it streamed by (no text kept): its size up to the
    `max_tokens` cut, and some places where a shard may end (`split`)."""

    n_tokens: int
    """Real tokens the pass harvests."""
    n_documents: int
    """Documents that give tokens (those in `keep` only, for pass 2)."""
    stop: int
    """One past the index of the last document the pass reads."""
    cut: bool
    """`max_tokens` stopped the corpus (the last shard gets the cap)."""
    ends: tuple[tuple[int, int, int], ...]
    """(stop, tokens, documents) before each place a shard may end: after a document that closes a whole
    number of sorting windows, with the tokens and documents up to it; ascending, thinned to at most
    MAX_CANDIDATES about evenly spaced by tokens."""


def plan_corpus(cfg: AtlasHarvestConfig, tokenizer: Any, keep: Collection[int] | None = None) -> CorpusPlan:
    """Stream the corpus once through the harvest's own chunker (`iter_chunks`, the tokenizer alone: cheap next to
    the model) and note where a shard may end; host memory does not grow with the corpus.

    `keep`: only these documents (pass 2: those holding a selected token), read without `max_tokens`
    (pass 1's cut is in its `end_key`); None: every document up to the token `max_tokens` stops at.
    A shard may end only where the chunks before it fill whole sorting windows (`batches.sort_window`),
    so each shard is batched exactly as the unsharded stream is, and a sharded pass sees bitwise the
    same activations as one in this process.
    """
    from pipeline.harvest.batches import iter_chunks
    from pipeline.harvest.ordinals import indexed

    window = sort_window(cfg.batch_size)
    documents = enumerate(iter_documents(cfg.corpus, cfg.text_field))
    if keep is not None:
        documents = ((index, document) for index, document in documents if index in keep)
    counts: dict[str, int] = {}
    ends: list[tuple[int, int, int]] = []
    spacing, tokens, n_chunks, n_documents, current = 1, 0, 0, 0, -1

    def close_document() -> None:
        """After the current document: a place a shard may end when it closes whole windows."""
        nonlocal spacing, ends
        if current >= 0 and n_chunks % window == 0 and tokens - (ends[-1][1] if ends else 0) >= spacing:
            ends.append((current + 1, tokens, n_documents))
            while len(ends) > MAX_CANDIDATES:
                spacing *= 2
                ends = thinned(ends, spacing)

    chunks = iter_chunks(indexed(documents), tokenizer, cfg.max_length, None if keep else cfg.max_tokens, counts)
    for chunk in chunks:
        if chunk.document.index != current:
            close_document()
            current, n_documents = chunk.document.index, n_documents + 1
        tokens += int(chunk.real.sum())
        n_chunks += 1
    cut = keep is None and cfg.max_tokens is not None and counts.get("tokens", 0) >= cfg.max_tokens
    # The last document closes the stream: no shard ends there.
    return CorpusPlan(tokens, n_documents, current + 1, cut, tuple(end for end in ends if 0 < end[1] < tokens))


def thinned(ends: list[tuple[int, int, int]], spacing: int) -> list[tuple[int, int, int]]:
    """The places at least `spacing` tokens after the last one kept."""
    out: list[tuple[int, int, int]] = []
    for end in ends:
        if end[1] - (out[-1][1] if out else 0) >= spacing:
            out.append(end)
    return out


def split(plan: CorpusPlan, n_shards: int, cap_last: bool) -> list[Shard]:
    """The plan's documents as up to `n_shards` contiguous shards of about equal tokens, ending where it may.

    A small corpus has few such places, hence fewer shards. `cap_last`: the last shard gets `max_tokens`'
    cap (its own token count), the others none.
    """
    if plan.n_tokens == 0:
        return []
    targets = [plan.n_tokens * k / n_shards for k in range(1, n_shards)]
    chosen = sorted(
        {min(plan.ends, key=lambda end, t=target: (abs(end[1] - t), end[1])) for target in targets}
        if plan.ends
        else set()
    )
    shards: list[Shard] = []
    start, tokens, documents = 0, 0, 0
    for stop, upto_tokens, upto_documents in [*chosen, (plan.stop, plan.n_tokens, plan.n_documents)]:
        shards.append(Shard(len(shards), start, stop, upto_tokens - tokens, upto_documents - documents))
        start, tokens, documents = stop, upto_tokens, upto_documents
    if cap_last:
        shards[-1] = replace(shards[-1], max_tokens=shards[-1].n_tokens)
    return shards


# -- Ray ----------------------------------------------------------------------------------------


class _PassActor:
    """A Ray Data actor: loads the model and SAE once, then runs pass 1 or pass 2 on each shard it is given."""

    def __init__(self, cfg: AtlasHarvestConfig, stage: str, extra: bytes, threads: int, fail_dir: str | None) -> None:
        """`extra` is pass 2's pickled (top buffer, end key); `threads` torch's intra-op threads here."""
        import torch  # heavy; this actor runs the model

        if threads > 0:
            torch.set_num_threads(threads)
        from pipeline.atlas.harvest import prepare

        self.cfg, self.stage, self.fail_dir = cfg, stage, fail_dir
        self.model, self.sae = prepare(cfg)
        self.extra = pickle.loads(extra) if extra else None

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Each shard of the batch → its pickled result."""
        import numpy as np

        results = []
        for payload in batch["shard"]:
            shard: Shard = pickle.loads(payload)
            fail_once(self.fail_dir, f"{self.stage}-{shard.index}")
            if self.stage == "pass1":
                result = run_pass1_shard(self.cfg, shard, self.model, self.sae, no_progress)
            else:
                from pipeline.atlas.pass2 import materialise

                top, end_key = self.extra
                result = materialise(self.cfg, shard.documents(self.cfg), top, self.model, self.sae, end_key=end_key)
            results.append(pickle.dumps((shard.index, shard.n_tokens, shard.n_documents, result)))
        return {"result": np.asarray(results, dtype=object)}


class RayEngine:
    """Pass 1 and pass 2 on a Ray Data actor pool, the map builds as Ray tasks; a local instance or a cluster."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        workers: int | None = None,
        fail_once_dir: str | None = None,
        log_path: Path | None = None,
        max_retries: int = 3,
    ) -> None:
        """Start a local Ray instance (`address` None) or join the cluster at `address`; reuse the instance this
        process already runs (a test session's). EngineError (one line) when Ray is missing or the cluster does
        not answer within CONNECT_TIMEOUT_S.

        `workers`: actors per pass and map builds at once (default: GPUs on the cluster, else its CPUs, at most
        `os.cpu_count()` on a local instance). `fail_once_dir`: the `maps.FAIL_ONCE_ENV` test hook.
        """
        try:
            import ray
        except ImportError:
            raise EngineError("Ray is not installed here: pip install 'vista-tui[ray]', or leave out --ray") from None
        self.fail_once_dir = fail_once_dir
        self.max_retries = max_retries
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"vista-ray-{os.getpid()}.log"
        self._quiet = _QuietStderr(self.log_path)
        self.owned = not ray.is_initialized()
        if self.owned:
            if address is not None:
                check_reachable(address)
            self._quiet.start()
            try:
                _init_ray(address)
            except Exception as error:  # ray raises ConnectionError, RuntimeError, ValueError… here
                self._quiet.stop()
                where = f"the Ray cluster at {address}" if address else "a local Ray instance"
                raise EngineError(f"could not start {where} ({first_line(error)}); see {self.log_path}") from None
        else:
            self._quiet.start()
        _quiet_ray_logging()
        resources = ray.cluster_resources()
        self.gpus = int(resources.get(GPU_RESOURCE, 0))
        cpus = int(resources.get("CPU", 1))
        default = self.gpus or max(1, min(cpus, os.cpu_count() or 1))
        self.workers = workers or default
        self.cpus = cpus

    # -- pass 1 and pass 2 ------------------------------------------------------------------

    def _actor_resources(self) -> dict[str, Any]:
        """One GPU per actor when the cluster has GPUs; else half a CPU (see the module docstring)."""
        return {"num_gpus": 1} if self.gpus else {"num_cpus": 0.5}

    def _run_pass(
        self, cfg: AtlasHarvestConfig, stage: str, shards: Sequence[Shard], extra: bytes, progress: Progress, unit: str
    ) -> Iterator[tuple[int, int, int, Any]]:
        """Ray Data `map_batches` of one pass over the shards on an actor pool; the shards' results as they come."""
        import numpy as np
        import ray.data

        size = max(1, min(self.workers, len(shards)))
        threads = 0 if self.gpus else max(1, self.cpus // size)
        dataset = ray.data.from_items(
            [{"shard": pickle.dumps(shard)} for shard in shards], override_num_blocks=len(shards)
        )
        mapped = dataset.map_batches(
            _PassActor,
            fn_constructor_args=(cfg, stage, extra, threads, self.fail_once_dir),
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=size),
            # A lost actor is restarted and its shard run again: Ray Data's own defaults for actor pools
            # (max_restarts=-1, max_task_retries=-1); its remote-args knobs are deprecated in 2.60.
            **self._actor_resources(),
        )
        total = sum(shard.n_tokens if unit == "tokens" else shard.n_documents for shard in shards)
        done = 0
        progress(0, total, f"{len(shards)} shards on {size} {'GPU' if self.gpus else 'CPU'} actors")
        for finished, batch in enumerate(mapped.iter_batches(batch_size=1, batch_format="numpy"), start=1):
            for payload in np.asarray(batch["result"]).tolist():
                index, n_tokens, n_documents, result = pickle.loads(payload)
                done += n_tokens if unit == "tokens" else n_documents
                progress(done, total, f"{finished} of {len(shards)} shards")
                yield index, n_tokens, n_documents, result

    def harvest(self, cfg: AtlasHarvestConfig, report: StageReporter) -> HarvestResult:
        """Pass 1 sharded over the corpus and reduced by `merge_results`, pass 2 sharded by document, assembled."""
        from pipeline.atlas.harvest import no_tokens
        from pipeline.atlas.pass1 import merge_results
        from pipeline.atlas.pass2 import assemble, join, selection

        started = time.perf_counter()
        model, sae = load_pair(cfg)  # one-line errors (hook, d_in, latents) before any worker starts
        plan = plan_corpus(cfg, model.tokenizer)
        if plan.n_tokens == 0:
            raise no_tokens(cfg)
        n_shards = self.workers * SHARDS_PER_WORKER
        first = None
        # Each shard's result merged into the running one as it comes (in place): two buffers alive at most.
        for _, _, _, result in self._run_pass(
            cfg, "pass1", split(plan, n_shards, cap_last=plan.cut), b"", report("pass1", PASS1), "tokens"
        ):
            first = result if first is None else merge_results(first, result, in_place=True)
            del result
        assert first is not None
        if first.n_tokens == 0:
            raise no_tokens(cfg)
        second = split(plan_corpus(cfg, model.tokenizer, keep=set(selection(first.top))), n_shards, cap_last=False)
        extra = pickle.dumps((first.top, first.end_key))
        found: dict[int, list[Any]] = {}
        for *_, part in self._run_pass(cfg, "pass2", second, extra, report("pass2", PASS2), "documents"):
            found = join(found, part)
        del extra
        return assemble(cfg, first, found, model, sae, started=started)

    # -- the map builds ---------------------------------------------------------------------

    def build_maps(self, jobs: Sequence[MapJob]) -> Iterator[MapOutcome]:
        """Each job as a Ray task (a lost worker's task is retried), its outcome as it finishes."""
        import ray

        if not jobs:
            return
        # Whole CPUs per build, so that `workers` builds run at once; at most what the cluster has.
        cpus = max(0.5, min(1.0, self.cpus / self.workers))
        remote = ray.remote(build_latent).options(num_cpus=cpus, max_retries=self.max_retries, retry_exceptions=False)
        pending = {remote.remote(replace(job, fail_once=self.fail_once_dir)): job for job in jobs}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                job = pending.pop(ref)
                try:
                    yield ray.get(ref)
                except Exception as error:  # a task error or a worker lost past its retries: the latent's row says so
                    yield failed_outcome(job, f"map build failed: {_ray_error_line(error)}")

    def close(self) -> None:
        """Shut down the Ray instance this engine started (not one it joined in this process), give fd 2 back."""
        import ray

        if self.owned:
            with contextlib.suppress(Exception):
                ray.shutdown()
        self._quiet.stop()


def _ray_error_line(error: BaseException) -> str:
    """The one line of a Ray error: the task's own exception's, where there is one."""
    cause = getattr(error, "cause", None)
    return first_line(cause if isinstance(cause, BaseException) else error)


def check_reachable(address: str) -> None:
    """EngineError unless `HOST:PORT` (or `ray://HOST:PORT`) accepts a TCP connection within CONNECT_TIMEOUT_S.

    ray.init waits a long time on an address that does not answer; this says so in seconds.
    """
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise EngineError(f"--ray-address {address}: expected HOST:PORT (the head node's GCS port, e.g. 10.0.0.5:6379)")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as error:
        raise EngineError(
            f"the Ray cluster at {address} cannot be reached ({first_line(error)}); check the address, or leave out"
            " --ray-address to start a local instance with --ray"
        ) from None


def _init_ray(address: str | None) -> None:
    """ray.init quietly: no dashboard, no worker logs on this terminal, Ray's own loggers at WARNING."""
    import logging

    import ray

    # The token-auth notice and the like come before the log level applies.
    logging.getLogger("ray").setLevel(logging.ERROR)
    ray.init(
        address=address,
        log_to_driver=False,
        logging_level=logging.WARNING,
        configure_logging=True,
        include_dashboard=False,
    )


def _quiet_ray_logging() -> None:
    """Ray Data logs to its session file only, with no progress bars of its own (ours is the one display)."""
    import logging

    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logger = logging.getLogger("ray.data")
    for handler in list(logger.handlers):
        if not isinstance(handler, logging.FileHandler) and "File" not in type(handler).__name__:
            logger.removeHandler(handler)
    logging.getLogger("ray").setLevel(logging.WARNING)


class _QuietStderr:
    """While started: file descriptor 2 (where Ray's C++ core writes its log lines) goes to a log file, and
    Python's `sys.stderr` writes to a copy of the terminal, so the progress display and our errors still show."""

    def __init__(self, log_path: Path) -> None:
        """`log_path` receives what is written to fd 2."""
        self.log_path = log_path
        self._saved_fd: int | None = None
        self._saved_stderr: Any = None

    def start(self) -> None:
        """Point fd 2 at the log file; keep `sys.stderr` on the terminal (a no-op where fd 2 is not usable)."""
        if self._saved_fd is not None:
            return
        try:
            sys.stderr.flush()
            terminal = os.dup(2)
        except (OSError, ValueError):
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 2)
        os.close(log)
        self._saved_fd, self._saved_stderr = terminal, sys.stderr
        if _writes_to_fd2(sys.stderr):
            sys.stderr = os.fdopen(os.dup(terminal), "w", buffering=1, encoding="utf-8", errors="replace")

    def stop(self) -> None:
        """Give fd 2 and `sys.stderr` back."""
        if self._saved_fd is None:
            return
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        replaced = sys.stderr is not self._saved_stderr
        if replaced:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.close()
            sys.stderr = self._saved_stderr
        os.dup2(self._saved_fd, 2)
        os.close(self._saved_fd)
        self._saved_fd = None


def _writes_to_fd2(stream: Any) -> bool:
    """Whether `stream` writes to file descriptor 2 (the real stderr, not a test's capture buffer)."""
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


def open_engine(use_ray: bool, address: str | None, fail_once_dir: str | None = None) -> Engine:
    """The engine the options ask for: Ray (`--ray`, or `--ray-address ADDR`), else in process."""
    if use_ray or address is not None:
        return RayEngine(address, fail_once_dir=fail_once_dir)
    return InProcess()


def ray_available() -> bool:
    """Whether Ray is installed here (the demo runs on it when it is)."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None
