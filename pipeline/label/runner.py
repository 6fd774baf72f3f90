"""The resumable, concurrent labelling run: leaves first, each answer cached as it arrives.

The nodes of one depth are asked for concurrently, deepest first: a parent's prompt carries
its children's labels, so a level starts when the one below has finished. Every valid answer
is appended to `<map>/labels.jsonl` (vista_tui.mapdata.label_cache) the moment it arrives, so
a rerun after a kill asks only for what is missing. The tree is rewritten once, at the end.
The first request goes alone, so that a dead or misconfigured endpoint (nothing listening, a
wrong URL or key: see backends) is one clear error (`EndpointError`), not N failed nodes. When
the endpoint goes away or starts refusing mid-run, the nodes left fail without being asked, and
the report says why (`stopped`).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline.label.backends import (
    LocalChatModel,
    Rejected,
    Unreachable,
    UsageCounter,
    chat_completion,
    check_local_model,
)
from pipeline.label.config import EndpointError, LabelConfig, LabelError, NodeFailed
from pipeline.label.prompts import RunContexts, build_prompt, cache_key, format_context, representative_rows
from pipeline.label.replies import parse_reply
from pipeline.steps import Progress, make_record, no_progress, timed
from vista_tui.mapdata import (
    CachedLabel,
    ClusterNode,
    LabelCacheWriter,
    MapReader,
    read_label_cache,
    update_tree,
    utc_now,
)

STEP = "label"
VERSION = 1
DISTRIBUTIONS: tuple[str, ...] = ()
"""None recorded: what shapes a label is the model named in the params, not a package version."""


@dataclass
class LabelReport:
    """What a labelling run did."""

    map_dir: Path
    n_nodes: int = 0
    n_ok: int = 0
    n_cached: int = 0
    """Answers taken from the label cache (labels.jsonl) instead of asked for."""
    n_requested: int = 0
    """Nodes asked for (each may have taken several HTTP tries)."""
    n_requests: int = 0
    """Requests sent (HTTP tries, or prompts generated locally), retries included."""
    n_retries: int = 0
    n_skipped: int = 0
    """Nodes left for a later run (max_requests reached)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    """Estimated from the tokens and the config's prices; None when no price was given."""
    seconds: float = 0.0
    """Wall time of the run (model loading included), not counting the final tree write."""
    failures: dict[str, str] = field(default_factory=dict)
    """node id -> reason, for every node marked failed."""
    stopped: str | None = None
    """Why the run stopped asking before the end (the endpoint went away or refused), as one line; else None."""

    @property
    def n_failed(self) -> int:
        """Nodes marked failed."""
        return len(self.failures)

    @property
    def n_new(self) -> int:
        """Labels this run got from the model (not from the cache)."""
        return self.n_ok - self.n_cached

    @property
    def labels_per_s(self) -> float:
        """New labels per second of the run."""
        return self.n_new / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> list[str]:
        """The run in three plain lines: outcome; requests and throughput; tokens and cost."""
        outcome = f"labelled {self.n_ok}/{self.n_nodes} nodes: {self.n_new} new, {self.n_cached} cached"
        if self.n_failed:
            outcome += f", {self.n_failed} failed"
        if self.n_skipped:
            outcome += f", {self.n_skipped} left for the next run"
        requests = f"{self.n_requests:,} request{'' if self.n_requests == 1 else 's'}"
        retries = f"{self.n_retries:,} retr{'y' if self.n_retries == 1 else 'ies'}"
        tokens = f"{self.prompt_tokens:,} prompt + {self.completion_tokens:,} completion tokens"
        if self.cost_usd is None:
            cost = "no cost estimate (give --price-in/--price-out)"
        else:
            cost = f"estimated cost ${self.cost_usd:.4f}"
        return [
            outcome,
            f"{requests} ({retries}) in {self.seconds:.1f} s: {self.labels_per_s:.2f} labels/s",
            f"{tokens}; {cost}",
        ]


class _Skipped(Exception):
    """Not asked: the request budget of this run is spent."""


@dataclass(frozen=True)
class _Halt:
    """Why no more requests go out: the reason each node left gets, and the one line for the user."""

    reason: str
    message: str


def _levels(nodes: list[ClusterNode]) -> list[list[ClusterNode]]:
    """Nodes grouped by depth, deepest first (children before parents)."""
    depths = sorted({node.depth for node in nodes}, reverse=True)
    return [[node for node in nodes if node.depth == depth] for depth in depths]


class _LabelRun:
    """One run's state: what is cached, asked, answered and failed, shared by the worker threads.

    The main thread walks the levels and takes cached answers; workers ask for the rest. What
    workers change (results, report counts, the request budget) is changed under one lock.
    """

    def __init__(self, cfg: LabelConfig, reader: MapReader, wanted: set[str], progress: Progress) -> None:
        self.cfg = cfg
        self.reader = reader
        self.tree = list(reader.tree)
        self.wanted = wanted
        self.progress = progress
        self.children: dict[str, list[ClusterNode]] = {}
        for node in self.tree:
            if node.parent_id is not None:
                self.children.setdefault(node.parent_id, []).append(node)
        self.report = LabelReport(map_dir=reader.path, n_nodes=len(wanted))
        self.cache = read_label_cache(reader.path)
        self.writer = LabelCacheWriter(reader.path)
        self.counter = UsageCounter()
        self.contexts = RunContexts(reader)
        self.local = LocalChatModel(cfg) if cfg.backend == "transformers" else None
        self.results: dict[str, CachedLabel] = {}
        """node id -> its answer, from the cache or from this run."""
        self._lock = threading.Lock()
        self._budget = cfg.max_requests
        self._halt: _Halt | None = None
        """Set once the endpoint is found unreachable or refusing; later nodes fail at once, unasked."""
        self._answered = False
        """Whether the endpoint has answered a request of this run (then a 400 may be about one prompt)."""
        self._done = 0

    def current_label(self, node: ClusterNode) -> str:
        """The label a parent's prompt quotes for `node`: this run's answer, else its standing good label."""
        if node.node_id in self.results:
            return self.results[node.node_id].label
        if node.node_id in self.wanted:
            return ""  # asked for in this run and failed: its old label is stale
        return node.labels.llm_label if node.labels.label_status == "ok" else ""

    def prompt_for(self, node: ClusterNode) -> str:
        """The user message for `node`: its telling contexts, its focus tokens and its children's labels."""
        cfg = self.cfg
        rows = representative_rows(self.reader, node, cfg.n_contexts, contexts=self.contexts)
        quoted = [format_context(tokens, focus, cfg.max_context_chars) for tokens, focus in self.contexts.windows(rows)]
        kids = [self.current_label(kid) for kid in self.children.get(node.node_id, []) if kid.kind != "noise"]
        return build_prompt(
            quoted, [label for label in kids if label], focus_tokens=node.labels.focus_tokens, size=node.size
        )

    def _ask(self, node: ClusterNode, prompt: str, key: str) -> None:
        """Ask for one node's label and cache the answer; raises NodeFailed or _Skipped."""
        with self._lock:
            if self._halt is not None:
                raise NodeFailed(self._halt.reason)
            if self._budget is not None:
                if self._budget <= 0:
                    raise _Skipped
                self._budget -= 1
            self.report.n_requested += 1
        try:
            if self.local is not None:
                content = self.local.chat(prompt, self.counter)
            else:
                content = chat_completion(self.cfg, node.node_id, prompt, self.counter)
        except Unreachable as error:
            message = f"cannot reach the LLM endpoint at {self.cfg.base_url} ({error}); start it or set --base-url"
            raise NodeFailed(self._stop(_Halt(f"endpoint unreachable ({error})", message))) from None
        except Rejected as error:
            if error.per_request and self._answered:
                raise NodeFailed(error.reason) from None  # this prompt, not the endpoint: the others go on
            raise NodeFailed(self._stop(_Halt(f"endpoint refused ({error.status_line})", str(error)))) from None
        self._answered = True
        label, explanation, visual = parse_reply(content, self.cfg)
        entry = CachedLabel(node.node_id, key, label, explanation, visual, model=self.cfg.model_name, at=utc_now())
        self.writer.append(entry)
        with self._lock:
            self.results[node.node_id] = entry

    def _stop(self, halt: _Halt) -> str:
        """Ask for nothing more (the first reason found stands); returns the reason this node fails with."""
        with self._lock:
            if self._halt is None:
                self._halt = halt
        return halt.reason

    def settle(self, node: ClusterNode, prompt: str, key: str, *, alone: bool = False) -> None:
        """Ask for one node and count the outcome (ok, skipped or failed); runs on a worker thread.

        `alone`: the run's first request; when it finds the endpoint unusable the run ends with one
        error line, so the bar is not moved (it would only say "1 failed" above that line).
        """
        try:
            self._ask(node, prompt, key)
            with self._lock:
                self.report.n_ok += 1
        except _Skipped:
            with self._lock:
                self.report.n_skipped += 1
        except NodeFailed as error:
            with self._lock:
                self.report.failures[node.node_id] = str(error)
        with self._lock:
            self._done += 1
            if alone and self._halt is not None:
                return
            self.progress(
                self._done, self.report.n_nodes, f"{self.report.n_failed} failed" if self.report.failures else ""
            )

    def _take_cached(self, node: ClusterNode, entry: CachedLabel) -> None:
        """Use a cached answer for `node` (called between levels, when no worker runs: no lock needed)."""
        self.results[node.node_id] = entry
        self.report.n_cached += 1
        self.report.n_ok += 1
        self._done += 1
        self.progress(self._done, self.report.n_nodes, "")

    def label_levels(self) -> None:
        """Label the wanted nodes, deepest level first; fill the report's counts and time."""
        cfg, report = self.cfg, self.report
        with timed() as seconds, ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="label") as pool:
            self.progress(0, report.n_nodes, "")
            first = True
            for level in _levels(self.tree):
                pending = []
                for node in level:
                    if node.node_id not in self.wanted:
                        continue
                    prompt = self.prompt_for(node)
                    key = cache_key(node.node_id, prompt, cfg.model_name)
                    if key in self.cache:
                        self._take_cached(node, self.cache[key])
                        continue
                    pending.append((node, prompt, key))
                if pending and first:
                    # The first request goes alone: a dead endpoint is one clear error, not N failed nodes.
                    first = False
                    self.settle(*pending.pop(0), alone=True)
                    if self._halt is not None:
                        raise EndpointError(self._halt.message, requests=self.counter.requests)
                futures = [pool.submit(self.settle, node, prompt, key) for node, prompt, key in pending]
                for future in futures:
                    future.result()
        report.seconds = seconds[0]
        report.stopped = self._halt.message if self._halt is not None else None
        counter = self.counter
        report.prompt_tokens = counter.prompt_tokens
        report.completion_tokens = counter.completion_tokens
        report.n_requests = counter.requests
        report.n_retries = counter.retries
        if cfg.price_in is not None or cfg.price_out is not None:
            report.cost_usd = (
                counter.prompt_tokens * (cfg.price_in or 0.0) + counter.completion_tokens * (cfg.price_out or 0.0)
            ) / 1e6

    def write_tree(self) -> None:
        """Put this run's labels and failures into the tree (nothing to write: the map is left alone)."""
        results, report = self.results, self.report
        if not results and not report.failures:
            return
        nodes = []
        for node in self.tree:
            labels = node.labels
            if node.node_id in results:
                entry = results[node.node_id]
                changed = entry.label != labels.llm_label
                labels = replace(
                    labels,
                    llm_label=entry.label,
                    llm_explanation=entry.explanation,
                    visual_prompt=entry.visual_prompt,
                    label_status="ok",
                    # A new reading makes the old agreement score stale.
                    agreement=float("nan") if changed else labels.agreement,
                )
            elif node.node_id in report.failures:
                labels = replace(labels, label_status=f"failed: {report.failures[node.node_id]}")
            nodes.append(replace(node, labels=labels))
        manifest = self.reader.manifest
        upstream_step = manifest.steps.get("keywords") or manifest.steps.get("cluster")
        record = make_record(
            STEP,
            VERSION,
            self.cfg.params(),
            upstream_step.step_id if upstream_step else None,
            DISTRIBUTIONS,
            report.seconds,
        )
        update_tree(self.reader.path, manifest, nodes, record)


def run(
    cfg: LabelConfig,
    map_dir: Path | str,
    *,
    node_ids: list[str] | None = None,
    progress: Progress = no_progress,
) -> LabelReport:
    """Label every node of the map (or only `node_ids`), leaves first; rewrite the tree once at the end."""
    check_local_model(cfg)
    map_dir = Path(map_dir)
    reader = MapReader(map_dir)
    known = {node.node_id for node in reader.tree}
    if node_ids is not None:
        unknown = [node_id for node_id in node_ids if node_id not in known]
        if unknown:
            raise LabelError(f"map {map_dir.name} has no node {', '.join(unknown)}")
    labelling = _LabelRun(cfg, reader, known if node_ids is None else set(node_ids), progress)
    labelling.label_levels()
    labelling.write_tree()
    return labelling.report
