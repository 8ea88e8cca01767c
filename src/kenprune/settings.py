"""Typed, validated settings: the one home of every default the CLI and the Python API share.

Small frozen values for what travels together: the calibration data, the evaluation protocol, the
output folder, and one value per job (prune, structured, ken, search, recover, finetune). The CLI
builds them from its arguments (its defaults are read from here); the Python API takes them, or
keyword shortcuts that build them. `check()` gives one-line errors before any model is loaded.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Union

from .errors import KenpruneError

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_ENCODER = "minilm-l6"
BOS_POLICIES = ("auto", "prepend", "none")
SPARSE_DTYPES = ("same", "float32", "float16", "bfloat16")
STREAM_MODES = ("auto", "on", "off")  # prune block by block from the files (models bigger than memory), or not
KEN_VALUE_DTYPES = ("fp32", "fp16", "bf16")
KEN_TENSORS = ("all", "blocks")  # every parameter tensor (the paper), or transformer blocks only
SEARCH_STRATEGIES = ("evolution", "random")
SEARCH_PROXIES = ("oneshot", "sequential")

Sparsity = Union[float, Mapping[Union[int, str], float]]


def _positive(value: Any, name: str, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise KenpruneError(f"{name} must be >= {minimum}, got {value!r}")


def _data_ref(data: str, name: str, default_split: str | None = None) -> None:
    from .data.corpora import parse_data_ref

    try:
        parse_data_ref(data, default_split=default_split) if default_split else parse_data_ref(data)
    except KenpruneError as exc:
        raise KenpruneError(f"{name}: {exc}") from None


def check_device(device: str | None) -> None:
    """A CUDA device that this machine or this torch build lacks is refused before any work."""
    if not device or device in ("cpu", "auto"):
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise KenpruneError(f"unknown --device {device!r}; use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            build = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise KenpruneError(f"--device {device}: {build}; use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise KenpruneError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")


class Settings:
    """Shared behaviour: a plain dict for the record, and `check()` (one-line errors)."""

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items()}  # type: ignore[call-overload]

    def check(self) -> "Settings":
        return self

    def replace(self, **changes: Any) -> Any:
        return replace(self, **changes)  # type: ignore[type-var]


@dataclass(frozen=True)
class Calibration(Settings):
    """Calibration windows: `samples` random windows of `seqlen` tokens from `data` (no BOS), seeded;
    `batch_size` windows per block forward (one, as in the papers' loops: Wanda 50 % on 2 cores took
    284 s in llm_prune.json vs 312 s at batch 2 in llm_prune_batch2.json; raise it on a GPU);
    `dtype` the block forwards' compute dtype (auto: kenprune.precision.AUTO_POLICY, float32 since bf16 cost
    over 1 % perplexity in benchmarks/vs_reference.py; statistics accumulate in float32 whatever it is)."""

    data: str = "wiki:calib"
    samples: int = 128
    seqlen: int = 512
    seed: int = 0
    batch_size: int = 1
    dtype: str = "auto"

    def check(self) -> "Calibration":
        from .precision import canonical

        canonical(self.dtype, "--dtype")
        _positive(self.samples, "--nsamples")
        _positive(self.seqlen, "--seqlen", 2)
        _positive(self.batch_size, "--batch-size")
        _data_ref(self.data, "--calib", default_split="calib")
        return self


@dataclass(frozen=True)
class Evaluation(Settings):
    """The pinned perplexity protocol (and the data for accuracy): never follows the calibration settings.

    data None: no evaluation. windows None: every window of the split. before: also evaluate the
    input model (the dense one), so the record holds both figures. dtype: the evaluation's compute dtype
    (float32, the pinned protocol; a bfloat16/float16 figure is marked so in every record and report;
    auto: the fast dtype of the hardware, for proxies such as the search fitness)."""

    data: str | None = None
    seqlen: int = 512
    windows: int | None = None
    bos: str = "auto"
    batch_size: int = 1
    before: bool = True
    # zero-shot tasks through lm-evaluation-harness (kenprune.evaluate.zero_shot): None = none; "default",
    # "all", NAME,..., stock:NAME; task_limit: the first N items of each task; task_dir: a user's task YAMLs
    tasks: str | None = None
    task_limit: int | None = None
    task_dir: str | None = None
    task_batch_size: int = 8
    dtype: str = "float32"

    def check(self) -> "Evaluation":
        from .precision import canonical

        canonical(self.dtype, "--eval-dtype")
        _positive(self.seqlen, "--eval-seqlen", 2)
        _positive(self.batch_size, "--eval-batch-size")
        if self.windows is not None:
            _positive(self.windows, "--eval-windows")
        if self.bos not in BOS_POLICIES:
            raise KenpruneError(f"unknown BOS policy {self.bos!r}; choose one of: {', '.join(BOS_POLICIES)}")
        if self.data:
            _data_ref(self.data, "--eval")
        if self.tasks or self.task_dir:
            from .evaluate.zero_shot import require_lm_eval, select_tasks

            if self.task_limit is not None:
                _positive(self.task_limit, "--limit (--eval-limit)")
            _positive(self.task_batch_size, "--task-batch-size")
            select_tasks(self.tasks, self.task_dir)
            require_lm_eval()
        return self

    @property
    def tasks_enabled(self) -> bool:
        return bool(self.tasks or self.task_dir)

    @property
    def enabled(self) -> bool:
        return bool(self.data)


@dataclass(frozen=True)
class Output(Settings):
    """Where a run writes: the folder (None: nothing written) and whether an existing run folder may be
    replaced (only after the new one is complete, and only a folder kenprune wrote)."""

    folder: Path | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.folder is not None and not isinstance(self.folder, Path):
            object.__setattr__(self, "folder", Path(self.folder))


@dataclass(frozen=True)
class PruneSettings(Settings):
    """Element-wise pruning: method, how much (one ratio, per-layer ratios or an N:M pattern), where."""

    method: str = "wanda"
    sparsity: Sparsity | None = None  # None: 0.5, or N/M for an N:M pattern
    pattern: str | None = None
    group: str | None = None  # None: the method's own comparison group
    allocation: str | None = None
    include_embeddings: bool = False
    sparse_dtype: str = "same"
    device: str | None = None
    max_memory: str | None = None  # e.g. "600MB", "4GB"; None: a share of the memory available
    stream: str = "auto"  # auto: stream when the in-memory path would not fit max_memory

    def check(self) -> "PruneSettings":
        from .methods import METHODS, Pattern, check_sparsity

        METHODS.get(self.method)
        pattern = Pattern.parse(self.pattern)
        sparsity = self.sparsity
        if pattern.is_nm and sparsity is not None and not isinstance(sparsity, Mapping) \
                and float(sparsity) != pattern.sparsity:
            raise KenpruneError(f"pattern {pattern} fixes the sparsity at {pattern.sparsity:g}; drop --sparsity "
                                f"or pass --sparsity {pattern.sparsity:g}")
        if sparsity is not None and not isinstance(sparsity, Mapping):
            check_sparsity(sparsity)
        check_device(self.device)
        if self.sparse_dtype not in SPARSE_DTYPES:
            raise KenpruneError(f"unknown --sparse-dtype {self.sparse_dtype!r}; choose one of: "
                                f"{', '.join(SPARSE_DTYPES)}")
        if self.allocation is not None:
            from .allocate import check_allocation

            if pattern.is_nm or isinstance(sparsity, Mapping):
                raise KenpruneError("--allocation spreads one --sparsity over layers; drop --pattern N:M or the ratios")
            check_allocation(self.allocation)
        if self.stream not in STREAM_MODES:
            raise KenpruneError(f"unknown --stream {self.stream!r}; choose one of: {', '.join(STREAM_MODES)}")
        if self.max_memory is not None:
            from .engine.streaming import parse_size

            parse_size(self.max_memory)
        return self

    def resolved_sparsity(self) -> Sparsity:
        """The sparsity to prune at: the N:M pattern's, the one given, or 0.5."""
        from .methods import Pattern

        pattern = Pattern.parse(self.pattern)
        if pattern.is_nm:
            return float(pattern.sparsity)
        return 0.5 if self.sparsity is None else self.sparsity


@dataclass(frozen=True)
class StructuredSettings(Settings):
    """Structured pruning (LLM-Pruner): which units go, and the latency comparison after."""

    importance: str = "taylor"
    ratio: float = 0.2
    keep_first: int = 0
    keep_last: int = 0
    round_to: int = 8
    global_ranking: bool = False
    attention_unit: str = "auto"
    blocks_per_pass: int | None = None
    latency: bool = True
    latency_repeats: int = 5
    # seed-list systems (issue 20): Beta-Rank's beta, selection stability, training after/while pruning
    beta: float = 0.5
    stability: int = 0  # 0: off; N >= 2: N selections from different calibration subsets and seeds
    steps: int = 0  # 0: no training; else LoRA recovery steps (polarization: gate + LoRA steps)
    train_data: str = "lee"
    train_seqlen: int = 256
    from_scratch: bool = False
    polarization: float = 1.0  # weight of the polarization penalty
    gate_lr: float = 0.05
    scratch_lr: float = 1e-3

    def check(self) -> "StructuredSettings":
        from .structured.importance import IMPORTANCE
        from .structured.plan import PrunePlan

        estimator = IMPORTANCE.get(self.importance)
        PrunePlan(self.ratio, self.keep_first, self.keep_last, self.round_to, self.global_ranking)
        _positive(self.latency_repeats, "--latency-repeats")
        if self.blocks_per_pass is not None:
            _positive(self.blocks_per_pass, "--blocks-per-pass")
        if not 0.0 <= self.beta <= 1.0:
            raise KenpruneError(f"--beta must be in [0, 1], got {self.beta}")
        if self.stability == 1 or self.stability < 0:
            raise KenpruneError(f"--stability must be 0 (off) or at least 2 runs, got {self.stability}")
        if self.steps < 0:
            raise KenpruneError(f"--steps must be >= 0, got {self.steps}")
        if self.steps == 0 and (estimator.trained or self.from_scratch):
            what = "--from-scratch" if self.from_scratch else f"--importance {self.importance}"
            raise KenpruneError(f"{what} trains; give --steps N (N > 0)")
        if self.steps:
            self.training().check()
        for name in ("polarization", "gate_lr", "scratch_lr"):
            if not getattr(self, name) > 0:
                raise KenpruneError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        return self

    def training(self, seed: int = 0) -> "LoraSettings":
        """The LoRA settings of the recovery (and of the gate training) these settings ask for."""
        return LoraSettings(data=self.train_data, steps=self.steps, seqlen=self.train_seqlen, seed=seed)


# LLM-Pruner estimates importance from 10 windows of 128 tokens; dense and pruned are compared on 8 windows.
STRUCTURED_CALIBRATION = Calibration(samples=10, seqlen=128)
STRUCTURED_EVALUATION = Evaluation(windows=8)


@dataclass(frozen=True)
class KenSettings(Settings):
    """KEN: k kept values per row (a count, a fraction or a percentage), the kernel, which tensors."""

    k: str = "0.25"
    kernel: str = "gaussian"
    tensors: str = "all"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    value_dtype: str = "fp32"
    save_model: bool = False
    selection: str = "ken"  # a kenprune.ken.selections name: KEN or a baseline at the same kept count
    select_on: str = "finetuned"  # KEN's KDE on the fine-tuned values (the paper) or on the deltas
    seed: int = 0  # random selections (random, dare)
    allocation: str | None = None  # spread a fractional k over the tensors by |delta| (kenprune.ken.allocation)

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", str(self.k))
        object.__setattr__(self, "include", tuple(self.include))
        object.__setattr__(self, "exclude", tuple(self.exclude))

    def check(self) -> "KenSettings":
        from .ken.apply import KSpec
        from .ken.kernels import KERNELS

        spec = KSpec.parse(self.k)
        KERNELS.get(self.kernel)
        self.row_selection()
        if self.allocation is not None:
            from .allocate import check_allocation

            check_allocation(self.allocation)
            if not spec.fraction or spec.value >= 1:
                raise KenpruneError(f"--allocation spreads a kept fraction below 100%; k = {self.k} is not one "
                                    f"(give e.g. --k 25%)")
        if self.value_dtype not in KEN_VALUE_DTYPES:
            raise KenpruneError(f"unknown value dtype {self.value_dtype!r}; choose one of: "
                                f"{', '.join(KEN_VALUE_DTYPES)}")
        if self.tensors not in KEN_TENSORS:
            raise KenpruneError(f"unknown tensor selection {self.tensors!r}; choose one of: {', '.join(KEN_TENSORS)}")
        return self

    def row_selection(self) -> str:
        """The ROW_SELECTIONS entry these settings name (`ken` on deltas is `ken-delta`)."""
        from .ken.selections import resolve

        return resolve(self.selection, self.select_on).name


# KEN's optional evaluation of the optimized model (perplexity windows for a causal LM).
KEN_EVALUATION = Evaluation(seqlen=256, windows=8)


@dataclass(frozen=True)
class SearchSettings(Settings):
    """A DSA search: target, budget, strategy and parallelism. The fitness proxy has its own
    calibration (SEARCH_CALIBRATION) and evaluation (SEARCH_EVALUATION, never a test split)."""

    method: str = "wanda"
    sparsity: float = 0.7
    budget: int = 100
    seconds: float | None = None
    workers: int | None = None  # None: half the cores, at most 4
    ray_address: str | None = None
    strategy: str = "evolution"
    lam: float = 0.08
    population: int = 10
    children: int = 4
    proxy: str = "oneshot"

    def check(self) -> "SearchSettings":
        from .allocate.mapping import check_lambda, check_target
        from .methods import METHODS

        METHODS.get(self.method)
        check_lambda(self.lam, check_target(self.sparsity))
        _positive(self.budget, "--budget")
        _positive(self.population, "--population")
        _positive(self.children, "--children")
        if self.strategy not in SEARCH_STRATEGIES:
            raise KenpruneError(f"unknown --strategy {self.strategy!r}; choose one of: {', '.join(SEARCH_STRATEGIES)}")
        if self.proxy not in SEARCH_PROXIES:
            raise KenpruneError(f"unknown --proxy {self.proxy!r}; choose one of: {', '.join(SEARCH_PROXIES)}")
        return self


SEARCH_CALIBRATION = Calibration(samples=16, seqlen=256)
SEARCH_EVALUATION = Evaluation(data="wiki:valid", seqlen=256, windows=4, dtype="auto")  # a proxy: the fast dtype


@dataclass(frozen=True)
class LoraSettings(Settings):
    """LLM-Pruner's LoRA recovery: r 8, alpha 16, dropout 0.05, every projection; a CPU-sized step budget."""

    data: str = "lee"
    steps: int = 50
    seqlen: int = 256
    batch_size: int = 2
    lr: float = 2e-4
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    seed: int = 0

    def check(self) -> "LoraSettings":
        for name in ("steps", "seqlen", "batch_size", "rank"):
            _positive(getattr(self, name), f"--{name.replace('_', '-')}")
        if not self.lr > 0:
            raise KenpruneError(f"--lr must be > 0, got {self.lr}")
        _data_ref(self.data, "--data")
        return self


RECOVER_EVALUATION = Evaluation(data="wiki:test", windows=8)


@dataclass(frozen=True)
class KenLoraSettings(Settings):
    """KEN's PEFT comparison: a LoRA adapter trained on the fine-tune's own data, steps and batches, its
    file sized to a KEN subnetwork's bytes (`match`: a KEN run folder or subnetwork file) or to `bytes`."""

    match: str | None = None
    bytes: int | None = None
    rank: int | None = None  # a fixed rank instead of a byte budget
    targets: tuple[str, ...] = ()  # Linear names (last part) to adapt; () = every Linear in the transformer blocks
    lr: float = 5e-4
    save_model: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))

    def check(self) -> "KenLoraSettings":
        given = [x for x in (self.match, self.bytes, self.rank) if x is not None]
        if len(given) != 1:
            raise KenpruneError("give exactly one of --match KEN_RUN (a KEN run folder or subnetwork file), "
                                "--bytes N or --rank R")
        for name in ("bytes", "rank"):
            if getattr(self, name) is not None:
                _positive(getattr(self, name), f"--{name}")
        if self.match is not None and not Path(self.match).exists():
            raise KenpruneError(f"--match {self.match} does not exist; give a KEN run folder or its "
                                f"subnetwork.safetensors")
        if not self.lr > 0:
            raise KenpruneError(f"--lr must be > 0, got {self.lr}")
        return self


@dataclass(frozen=True)
class FinetuneSettings(Settings):
    """Fine-tuning that makes KEN's (pre-trained, fine-tuned) pair: a classifier on a labelled corpus or
    a causal LM adapted to text. steps overrides epochs; lr None: 1e-4 for a classifier, 3e-5 for an LM."""

    data: str = "pang-lee"
    steps: int | None = None
    epochs: float = 4.0
    lr: float | None = None
    batch_size: int = 16
    seqlen: int = 128
    seed: int = 0

    def check(self) -> "FinetuneSettings":
        if self.steps is not None:
            _positive(self.steps, "--steps")
        _positive(self.batch_size, "--batch-size")
        if not self.epochs > 0:
            raise KenpruneError(f"--epochs must be positive, got {self.epochs}")
        return self


# held-out perplexity windows of a causal-LM fine-tune (accuracy uses the whole test split)
FINETUNE_EVALUATION = Evaluation(windows=8)


TOKEN_WPR_STARTS = ("auto", "uniform", "cls")


@dataclass(frozen=True)
class TokenSettings(Settings):
    """Token pruning (Zero-TPrune, ToMe, baselines) at inference: the method and how many tokens remain.

    keep: one cumulative keep ratio (None: 0.6, or the schedule's); schedule: ratios per layer
    (tokens/schedule.py), exclusive with keep. wpr_start auto: [CLS]-weighted for [CLS]-pooled models
    (classifiers, ViT), uniform for mean-pooled sentence encoders. The run measures fidelity on `texts`
    paragraphs of `data` cut to `seqlen` tokens (accuracy on the labelled split for a classifier), latency
    against dense over `latency_repeats` alternating rounds, and traces `examples` inputs layer by layer.
    flops: a FLOPs target instead of keep or schedule (the pruned encoder's share of the dense FLOPs at each
    input's length, tokens.schedule.flops_schedule)."""

    method: str = "zero-tprune"
    keep: float | None = None
    schedule: str | None = None
    flops: float | None = None
    wpr_start: str = "auto"
    similarity_share: float = 0.5
    vhf_min: float = 0.01
    vhf_max: float = 0.7
    data: str = "wiki:test"
    texts: int = 64
    seqlen: int = 128
    batch_size: int = 16
    examples: int = 3
    latency_repeats: int = 5
    seed: int = 0

    def check(self) -> "TokenSettings":
        from .tokens import TOKEN_METHODS
        from .tokens.schedule import parse

        TOKEN_METHODS.get(self.method)
        if self.keep is not None and self.schedule is not None:
            raise KenpruneError("give --keep or --schedule, not both (a schedule sets the keep ratio per layer)")
        if self.flops is not None and (self.keep is not None or self.schedule is not None):
            raise KenpruneError("give --flops, --keep or --schedule, not two of them (a FLOPs target sets the keep "
                                "ratios)")
        if self.flops is not None and (isinstance(self.flops, bool) or not 0 < float(self.flops) <= 1):
            raise KenpruneError(f"--flops must be in (0, 1] (a share of the dense FLOPs), got {self.flops!r}")
        if self.keep is not None and (isinstance(self.keep, bool) or not 0 < float(self.keep) <= 1):
            raise KenpruneError(f"--keep must be in (0, 1], got {self.keep!r}")
        if self.schedule is not None:
            parse(self.schedule)
        if self.wpr_start not in TOKEN_WPR_STARTS:
            raise KenpruneError(f"unknown --wpr-start {self.wpr_start!r}; choose one of: {', '.join(TOKEN_WPR_STARTS)}")
        if not 0 <= self.similarity_share <= 1:
            raise KenpruneError(f"--similarity-share must be in [0, 1], got {self.similarity_share}")
        if not 0 <= self.vhf_min <= self.vhf_max:
            raise KenpruneError(f"the head filter needs 0 <= --vhf-min <= --vhf-max, got {self.vhf_min}, {self.vhf_max}")
        for name in ("texts", "batch_size", "latency_repeats"):
            _positive(getattr(self, name), f"--{name.replace('_', '-')}")
        _positive(self.seqlen, "--seqlen", 4)
        _positive(self.examples, "--examples", 0)
        _data_ref(self.data, "--data")
        return self

    def resolved_schedule(self) -> Any:
        """The schedule the run applies: a FlopsTarget, the schedule text, or the keep ratio."""
        if self.flops is not None:
            from .tokens.schedule import FlopsTarget

            return FlopsTarget(self.flops)
        return self.schedule if self.schedule is not None else 0.6 if self.keep is None else float(self.keep)


FEDERATED_WEIGHTINGS = ("tokens", "equal")  # kenprune.federated.stats.WEIGHTINGS


@dataclass(frozen=True)
class FederatedSettings(Settings):
    """Federated calibration (kenprune.federated): statistics computed where the data is, merged, pruned here.

    clients: one CORPUS:SPLIT per client, each sampled with the Calibration's windows/seqlen/seed and
    calibrated in per-block rounds (the centralized engine's result); stats: statistics files or `kenprune
    stats` folders instead (one round on the dense model). weighting: tokens (the union's statistics) or
    equal (each client the same say). workers > 1 or ray_address: clients as Ray actors. agreement: each
    client's own masks compared with the merged ones."""

    clients: tuple[str, ...] = ()
    stats: tuple[str, ...] = ()
    weighting: str = "tokens"
    workers: int = 1
    ray_address: str | None = None
    agreement: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "clients", tuple(self.clients))
        object.__setattr__(self, "stats", tuple(str(s) for s in self.stats))

    @property
    def enabled(self) -> bool:
        return bool(self.clients or self.stats)

    def check(self) -> "FederatedSettings":
        if self.clients and self.stats:
            raise KenpruneError("give --clients (calibrate in rounds) or --stats FILE... (exported statistics), "
                                "not both")
        if self.weighting not in FEDERATED_WEIGHTINGS:
            raise KenpruneError(f"unknown --weighting {self.weighting!r}; choose one of: "
                                f"{', '.join(FEDERATED_WEIGHTINGS)}")
        _positive(self.workers, "--workers")
        for i, data in enumerate(self.clients):
            _data_ref(data, f"--clients (client {i + 1})", default_split="calib")
        return self


@dataclass(frozen=True)
class PhaseMapSettings(Settings):
    """A prunability phase map (kenprune.phase): a temperature-like axis (fine-tuning steps on `data`, or
    checkpoint folders the user lists) x a load-like axis (densities); each cell pruned with `method`,
    recovered for `recover_steps` masked steps (0: none), evaluated, and its loss barrier to the dense
    parent measured at `alphas` points; cells named by regime with the two thresholds.
    lr None: 1e-4 for a classifier, 3e-5 for a causal LM (the finetune defaults)."""

    data: str = "pang-lee"
    steps: tuple[int, ...] = (0, 25, 50, 100)
    checkpoints: tuple[str, ...] = ()
    densities: tuple[float, ...] = (0.9, 0.7, 0.5, 0.3)
    method: str = "magnitude"
    recover_steps: int = 0
    lr: float | None = None
    batch_size: int = 16
    seqlen: int = 128
    eval_data: str | None = None  # None: the test split of `data`
    eval_examples: int = 64  # classifier examples, or causal-LM windows of `seqlen` tokens
    alphas: int = 11
    barrier_threshold: float = 0.05
    similarity_threshold: float = 0.9
    calib_samples: int = 8  # calibration windows of `seqlen` tokens from `data` (wanda, sparsegpt)
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(int(s) for s in self.steps))
        object.__setattr__(self, "checkpoints", tuple(str(c) for c in self.checkpoints))
        object.__setattr__(self, "densities", tuple(float(d) for d in self.densities))

    def check(self) -> "PhaseMapSettings":
        from .methods import METHODS

        METHODS.get(self.method)
        if not self.checkpoints and not self.steps:
            raise KenpruneError("the phase map needs --steps (a fine-tuning axis) or --checkpoints")
        if any(s < 0 for s in self.steps) or len(set(self.steps)) != len(self.steps):
            raise KenpruneError(f"--steps must be distinct counts >= 0, got {list(self.steps)}")
        if not self.densities or any(not 0 < d <= 1 for d in self.densities):
            raise KenpruneError(f"--densities must be in (0, 1], got {list(self.densities)}")
        for name in ("batch_size", "eval_examples", "calib_samples"):
            _positive(getattr(self, name), f"--{name.replace('_', '-')}")
        _positive(self.seqlen, "--seqlen", 2)
        _positive(self.alphas, "--alphas", 3)
        _positive(self.recover_steps, "--recover-steps", 0)
        if self.lr is not None and not self.lr > 0:
            raise KenpruneError(f"--lr must be > 0, got {self.lr}")
        if not self.barrier_threshold >= 0 or not 0 <= self.similarity_threshold <= 1:
            raise KenpruneError("--barrier-threshold must be >= 0 and --similarity-threshold in [0, 1]")
        _data_ref(self.data, "--data", default_split="calib")
        if self.eval_data:
            _data_ref(self.eval_data, "--eval")
        return self


def given(**values: Any) -> dict[str, Any]:
    """The settings as the user gave them (None and empty values left out), for the record."""
    out = {}
    for key, value in values.items():
        if value is None or value == () or value == []:
            continue
        out[key] = value.to_dict() if isinstance(value, Settings) else str(value) if isinstance(value, Path) else value
    return out


__all__ = ["Calibration", "Evaluation", "Output", "PruneSettings", "StructuredSettings", "KenSettings",
           "SearchSettings", "LoraSettings", "KenLoraSettings", "FinetuneSettings", "DEFAULT_MODEL",
           "STRUCTURED_CALIBRATION",
           "STRUCTURED_EVALUATION", "KEN_EVALUATION", "SEARCH_CALIBRATION", "SEARCH_EVALUATION", "RECOVER_EVALUATION",
           "FINETUNE_EVALUATION", "TokenSettings", "field", "FederatedSettings",
           "PhaseMapSettings"]
