"""Dataclass configs for generated-weight training: QPG and its LoRA / low-rank baselines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..compiled import ENGINES
from ..quantum.backends import BACKENDS
from ..quantum.noise import check_probability

TRANSFORMS = ("scaled", "qt", "sqrt", "log", "amplitude")
COMMONS = ("balance", "subtract", "learned", "none")
INPUTS = ("circuit", "frozen", "embedding", "softmax")
GAINS = ("layer", "channel")
INITS = ("scale", "hyperfan")


@dataclass
class TargetConfig:
    """Which layers get generated weights.

    Args:
        target_modules: regular expressions; a layer is targeted when one matches its full name
            (as in ``model.named_modules()``) and its type is supported.
        exclude_modules: regular expressions of layer names to keep classical (e.g. the first and last layer).
    """

    target_modules: tuple[str, ...] = field(default=(".*",), metadata={"help": "regexes of layer names to target"})
    exclude_modules: tuple[str, ...] = field(default=(), metadata={"help": "regexes of layer names to keep classical"})


@dataclass
class QPGConfig(TargetConfig):
    """Quantum Parameter Generation: one variational circuit per output channel plus a shared mapping network.

    Args:
        n_layers: circuit layers L (RY on every qubit, then an entangling ladder).
        rotations: single-qubit gates per circuit layer; ("ry",) keeps amplitudes real (fast path).
        entangler: ``cnot``, ``cz`` or ``none``.
        ring: close the entangling ladder into a ring.
        chunk: weights emitted per basis state (QPA-style chunking); qubits n = ceil(log2(ceil(M / chunk))).
        max_qubits: refuse circuits above this many qubits (suggests a larger ``chunk``).
        transform: what the mapping network reads per basis state: ``scaled`` (q = 2^n p - 1), ``qt``
            (Quantum-Train's (beta tanh(gamma 2^(n-1) p))^alpha, centred), ``sqrt`` (2^(n/2) sqrt(p), measurable,
            its gradient does not vanish with the amplitude), ``log`` (log(2^n p + 0.01)) or ``amplitude``
            (2^(n/2) times the signed amplitude: a simulator-only upper bound that no hardware can measure).
        qt_beta, qt_gamma, qt_alpha: parameters of the ``qt`` transform.
        mapping_hidden: hidden widths of the mapping network [bits, q] -> ... -> chunk; ``()`` is affine.
        mapping_activation: ``tanh``, ``gelu`` or ``none`` (an affine mapping, as the public QT code).
        common: the row shared by all of a layer's channels (the per-position mean): ``balance`` shrinks it to
            the size of one channel's own part (against rank collapse without losing a rank), ``subtract``
            removes it (so the channels' rows sum to zero: rank at most C_out - 1), ``learned`` replaces it by a
            trained row (zero at the start; full rank possible; per_row more parameters), ``none`` keeps it.
        gain: learnable log-gain per ``layer`` or per output ``channel``.
        init: ``scale`` (a fixed multiplier sets the initial weight std to the classical init's) or
            ``hyperfan`` (the mapping's output layer itself is rescaled to that std; no fixed multiplier).
        inputs: ``circuit`` (trained circuits: QPG), ``frozen`` (random circuits that are never trained: only
            mapping and gains learn; a control) or ``embedding`` (a learned per-channel vector with as many numbers
            as the circuit has angles, through a fixed random projection to the basis states: a classical
            hypernetwork control at QPG's budget; its weights' rank is capped at that count) or ``softmax`` (the
            same embedding and projection, then a softmax over the basis states: a classical probability vector
            per channel read through ``transform`` like circuit probabilities; nonlinear, so not rank-capped).
        residual: W = W0 + generated, W0 the classical random init kept frozen (its own mode, never QPG).
        min_compression: layers whose generator would not have at least this many times fewer trainable
            parameters than the layer has weights stay classical (``trainable_report`` says so).
        shots: estimate probabilities from this many measurements per circuit (None: exact), on every back-end.
        backend: where the circuits run: ``builtin`` (hqctf's simulator), ``pennylane`` (any PennyLane device)
            or ``qiskit`` (Qiskit Aer); the last two need ``pip install "hqctf[quantum]"``.
        device: the PennyLane device name (default ``default.qubit``, or ``default.mixed`` with depolarising
            noise), or for qiskit the Aer method (default ``automatic``); unused by builtin.
        readout_error: probability that reading a qubit flips it: one number for every qubit or one per qubit.
        depolarizing: probability of a depolarising channel on each qubit a gate acts on, after every gate.
        backward: simulator backward, ``adjoint``, ``autograd`` or ``checkpoint``.
        max_block: qubits fused into one Kronecker block by the simulator's torch engine.
        engine: simulator engine, ``auto`` (compiled CPU engine where it applies, else torch), ``native`` or ``torch``.
    """

    n_layers: int = field(default=4, metadata={"help": "circuit layers L"})
    rotations: tuple[str, ...] = field(default=("ry",), metadata={"help": "gates per layer: rx, ry, rz, u3"})
    entangler: str = field(default="cnot", metadata={"help": "cnot, cz or none"})
    ring: bool = field(default=True, metadata={"help": "close the entangling ladder into a ring"})
    chunk: int = field(default=1, metadata={"help": "weights per basis state"})
    max_qubits: int = field(default=20, metadata={"help": "largest circuit allowed"})
    transform: str = field(default="sqrt", metadata={"help": f"probability transform: one of {TRANSFORMS}"})
    qt_beta: float = 0.8
    qt_gamma: float = 0.1
    qt_alpha: float = 0.3
    mapping_hidden: tuple[int, ...] = field(default=(), metadata={"help": "mapping network widths"})
    mapping_activation: str = field(default="tanh", metadata={"help": "tanh, gelu or none"})
    common: str = field(default="subtract", metadata={"help": f"channel-common component: one of {COMMONS}"})
    gain: str = field(default="channel", metadata={"help": f"learnable log-gain per {GAINS}"})
    init: str = field(default="scale", metadata={"help": f"initial weight std: one of {INITS}"})
    inputs: str = field(default="circuit", metadata={"help": f"generator inputs: one of {INPUTS}"})
    residual: bool = field(default=False, metadata={"help": "W = frozen random W0 + generated (its own mode)"})
    min_compression: float = field(default=1.0, metadata={"help": "keep a layer classical unless its generator is this many times smaller"})
    shots: int | None = field(default=None, metadata={"help": "finite-shot estimation (None: exact)"})
    backend: str = field(default="builtin", metadata={"help": f"where circuits run: one of {BACKENDS}"})
    device: str | None = field(default=None, metadata={"help": "PennyLane device, or Aer method for qiskit"})
    readout_error: float | tuple[float, ...] = field(default=0.0,
                                                     metadata={"help": "readout flip probability (per qubit)"})
    depolarizing: float = field(default=0.0, metadata={"help": "depolarising probability after each gate"})
    backward: str = field(default="adjoint", metadata={"help": "adjoint, autograd or checkpoint"})
    max_block: int = field(default=5, metadata={"help": "qubits per fused Kronecker block (torch engine)"})
    engine: str = field(default="auto", metadata={"help": "simulator engine: auto, native or torch"})

    def __post_init__(self) -> None:
        for key, choices in (("transform", TRANSFORMS), ("common", COMMONS), ("inputs", INPUTS), ("gain", GAINS),
                             ("init", INITS)):
            if getattr(self, key) not in choices:
                raise ValueError(f"unknown {key} {getattr(self, key)!r}; choose from {list(choices)}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; choose from {list(BACKENDS)}")
        if self.shots is not None and self.shots < 1:
            raise ValueError(f"shots must be >= 1 (or None: exact), got {self.shots}")
        if isinstance(self.readout_error, Sequence):
            self.readout_error = tuple(self.readout_error)  # hashable: generators with equal settings share a batch
        check_probability("readout_error", self.readout_error)
        check_probability("depolarizing", self.depolarizing)
        if self.transform == "amplitude" and (self.shots or self.measured):
            raise ValueError("transform 'amplitude' is not measurable: it needs backend builtin, exact, without noise")
        if self.transform == "amplitude" and self.inputs == "softmax":
            raise ValueError("transform 'amplitude' reads signed circuit amplitudes; inputs 'softmax' are probabilities")
        if self.transform == "amplitude" and tuple(self.rotations) != ("ry",):
            raise ValueError("transform 'amplitude' needs real circuits: rotations ['ry']")
        if self.min_compression < 0:
            raise ValueError(f"min_compression must be >= 0, got {self.min_compression}")
        if self.mapping_activation not in ("tanh", "gelu", "none"):
            raise ValueError(f"unknown mapping_activation {self.mapping_activation!r}; choose from ['tanh', 'gelu', 'none']")
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; choose from {list(ENGINES)}")
        if self.chunk < 1 or self.n_layers < 1:
            raise ValueError(f"chunk and n_layers must be >= 1, got {self.chunk}, {self.n_layers}")

    @property
    def measured(self) -> bool:
        """True when circuits go through `hqctf.quantum.backends` (another back-end, or noise) rather than the
        builtin simulator's own exact or sampled path."""
        readout = self.readout_error if isinstance(self.readout_error, tuple) else (self.readout_error,)
        return self.backend != "builtin" or self.depolarizing > 0 or any(readout)


@dataclass
class LoRAConfig(TargetConfig):
    """LoRA: frozen weight plus a trainable low-rank update (alpha / r) * B @ A (B starts at zero).

    Args:
        r: rank of the update.
        alpha: scaling numerator.
    """

    r: int = field(default=4, metadata={"help": "rank of the update"})
    alpha: float = field(default=8.0, metadata={"help": "update scale is alpha / r"})


@dataclass
class LowRankConfig(TargetConfig):
    """Factorised weights W = U @ V of rank r trained from scratch (initialised from the classical init's SVD).

    Args:
        r: rank of the factorisation.
    """

    r: int = field(default=4, metadata={"help": "rank of the factorisation"})
