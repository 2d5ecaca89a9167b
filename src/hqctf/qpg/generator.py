"""QPG weight generator for one layer: per-channel circuit probabilities -> shared mapping network -> kernels."""

from __future__ import annotations

import math

import torch
from torch import nn

from .. import compiled
from ..quantum import CircuitSpec, simulate
from . import native
from .config import QPGConfig
from .targets import TargetError, from_matrix, weight_rows


def qubits_for(weights_per_channel: int, chunk: int) -> int:
    """n = ceil(log2(ceil(M / chunk))), at least 1."""
    return max(1, math.ceil(math.log2(math.ceil(weights_per_channel / chunk))))


def _basis_bits(n: int, count: int) -> torch.Tensor:
    """The first ``count`` basis bit strings as +-1 features (count, n), qubit 0 the most significant bit."""
    idx = torch.arange(count)
    bits = (idx[:, None] >> torch.arange(n - 1, -1, -1)) & 1
    return 1.0 - 2.0 * bits.float()


def balance_common_component(w: torch.Tensor) -> torch.Tensor:
    """Shrink the row shared by all channels of ``w`` (C_out, M) to the size of one channel's own part.

    A mapping network shared by all channels outputs a large common row; left alone it dominates
    the matrix and collapses its rank to ~1. Subtracting it entirely costs one rank (and everything
    when C_out = 2); re-adding it at the RMS norm of the centred rows keeps the rank full.
    """
    common = w.mean(0, keepdim=True)
    own = w - common
    size = own.square().sum(1).mean().sqrt() / common.norm().clamp_min(1e-12)
    return own + common * size


CHUNK_ELEMENTS = 1 << 20  # hidden activations per chunk of channels (4 MiB in float32)


class _ChunkedRecompute(torch.autograd.Function):
    """Apply ``fn`` to row chunks of q without keeping activations; recompute each chunk in backward.

    The mapping network's hidden activations have shape (channels, basis states, hidden): hundreds
    of MiB for a 3D UNet, more than the circuits themselves. Saving only q bounds them to one chunk.
    """

    @staticmethod
    def forward(ctx, fn, rows: int, params: tuple, q: torch.Tensor, *param_inputs: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx.fn, ctx.rows, ctx.params = fn, rows, params
        ctx.save_for_backward(q)
        return torch.cat([fn(q[i : i + rows]) for i in range(0, q.shape[0], rows)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        (q,) = ctx.saved_tensors
        grad_q = torch.empty_like(q)
        grad_params = [torch.zeros_like(p) for p in ctx.params]
        for i in range(0, q.shape[0], ctx.rows):
            with torch.enable_grad():
                part = q[i : i + ctx.rows].detach().requires_grad_()
                found = torch.autograd.grad(ctx.fn(part), (part, *ctx.params), grad[i : i + ctx.rows])
            grad_q[i : i + ctx.rows] = found[0]
            for total, g in zip(grad_params, found[1:]):
                total += g
        return (None, None, None, grad_q, *grad_params)


class _NativeMapping(torch.autograd.Function):
    """One-hidden-layer mapping in the compiled kernels: activations recomputed in backward, never stored."""

    @staticmethod
    def forward(ctx, q, a, p, w, b, activation: str) -> torch.Tensor:  # noqa: D102
        q, a_t, p, w, b = (t.contiguous() for t in (q, a.t(), p, w, b))
        ctx.save_for_backward(q, a_t, p, w)
        ctx.activation = activation
        return native.forward(q, a_t, p, w, b, activation)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        q, a_t, p, w = ctx.saved_tensors
        grad_q, grad_a_t, grad_p, grad_w, grad_b = native.backward(q, a_t, p, w, grad.contiguous(), ctx.activation)
        return grad_q, grad_a_t.t(), grad_p, grad_w, grad_b, None


class MappingNetwork(nn.Module):
    """Maps each basis state's [bit string, transformed probability] to ``chunk`` weights.

    Only the first ``n_states`` basis states are mapped (the rest would be truncated away). The first
    layer is split into a bit-string part (computed once for all channels) and a probability part,
    so the (channels, states, n+1) input is never materialised. Its hidden activations are never all
    stored either: one hidden layer with ``tanh`` or ``none`` on the CPU runs in the compiled kernels
    (``engine`` ``auto`` or ``native``); otherwise, under autograd, channels are mapped in chunks that
    are recomputed in backward.
    """

    def __init__(
        self, n_qubits: int, n_states: int, hidden: tuple[int, ...], chunk: int, activation: str, engine: str = "auto"
    ):
        super().__init__()
        self.activation, self.engine = activation, engine
        widths = (*hidden, chunk)
        self.bits_in = nn.Linear(n_qubits, widths[0])
        self.prob_in = nn.Parameter(torch.empty(widths[0]).uniform_(-1, 1) / math.sqrt(n_qubits + 1))
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.act = {"tanh": nn.Tanh(), "gelu": nn.GELU(), "none": nn.Identity()}[activation]
        self.register_buffer("bits", _basis_bits(n_qubits, n_states), persistent=False)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        """q (channels, n_states) -> weights (channels, n_states * chunk)."""
        if self._use_native(q):
            a = self.bits_in(self.bits.to(q.dtype))
            out = self.hidden[0]
            return _NativeMapping.apply(q, a, self.prob_in, out.weight, out.bias, self.activation)
        params = tuple(p for p in self.parameters() if p.requires_grad)
        if not self.hidden or not torch.is_grad_enabled() or not (q.requires_grad or params):
            return self._map(q)  # an affine mapping stores nothing larger than its output
        widest = max(layer.out_features for layer in (self.bits_in, *self.hidden))
        rows = max(1, CHUNK_ELEMENTS // (q.shape[1] * widest))
        return _ChunkedRecompute.apply(self._map, rows, params, q, *params)

    def output_parameters(self) -> list[nn.Parameter]:
        """Parameters of the layer that emits the weights (scaling them scales the output exactly)."""
        if self.hidden:
            return [self.hidden[-1].weight, self.hidden[-1].bias]
        return [self.bits_in.weight, self.bits_in.bias, self.prob_in]

    def _use_native(self, q: torch.Tensor) -> bool:
        fits = (
            len(self.hidden) == 1
            and self.activation in native.ACTIVATIONS
            and q.device.type == "cpu"
            and q.dtype in (torch.float32, torch.float64)
        )
        refusal = "the native mapping network needs one hidden layer, tanh or none, float32/64 on the CPU"
        return compiled.use_native(self.engine, fits, native.library, refusal)

    def _map(self, q: torch.Tensor) -> torch.Tensor:
        h = self.bits_in(self.bits.to(q.dtype)) + q[..., None] * self.prob_in
        for layer in self.hidden:
            h = layer(self.act(h))
        return h.reshape(q.shape[0], -1)


class QPGGenerator(nn.Module):
    """Generates one layer's weight tensor from C_out independent circuits and a shared mapping network.

    Args:
        shape: the weight's shape.
        out_dim: dimension of ``shape`` that indexes output channels.
        config: generator settings.
        target_std: standard deviation the generated weight gets at initialisation (the classical init's).
        base: the classical initial weight, kept frozen as W0 when ``config.residual``.
    """

    def __init__(self, shape: tuple[int, ...], out_dim: int, config: QPGConfig, target_std: float,
                 base: torch.Tensor | None = None):
        super().__init__()
        self.shape, self.out_dim, self.config = tuple(shape), out_dim, config
        self.target_std = target_std
        self.rows, self.per_row = weight_rows(self.shape, out_dim)
        n = qubits_for(self.per_row, config.chunk)
        if n > config.max_qubits:
            raise TargetError(
                f"a {self.per_row}-weight channel needs {n} qubits, over max_qubits={config.max_qubits}; "
                f"use chunked generation (chunk >= {math.ceil(self.per_row / 2**config.max_qubits)}) or raise max_qubits"
            )
        self.spec = CircuitSpec(n, config.n_layers, tuple(config.rotations), config.entangler, config.ring)
        self.n_states = math.ceil(self.per_row / config.chunk)
        if not self.uses_circuit:
            self.embedding = nn.Parameter(torch.randn(self.rows, self.spec.n_params))
            projection = torch.randn(self.spec.n_params, self.n_states) / math.sqrt(self.spec.n_params)
            self.register_buffer("projection", projection)
        else:
            angles = torch.rand(self.rows, *self.spec.angle_shape) * (2 * math.pi)
            self.angles = nn.Parameter(angles, requires_grad=config.inputs == "circuit")
        self.mapping = MappingNetwork(
            n, self.n_states, tuple(config.mapping_hidden), config.chunk, config.mapping_activation, config.engine
        )
        self.log_gain = nn.Parameter(torch.zeros((self.rows, 1) if config.gain == "channel" else ()))
        if config.common == "learned":
            self.common_row = nn.Parameter(torch.zeros(1, self.per_row))
        self.register_buffer("scale", torch.ones(()))
        if config.residual:
            if base is None:
                raise ValueError("a residual generator needs the classical initial weight as base")
            self.register_buffer("base", base.detach().clone())
        self.calibrate(target_std)

    @property
    def uses_circuit(self) -> bool:
        """True when the inputs come from simulated circuits (trained or frozen)."""
        return self.config.inputs in ("circuit", "frozen")

    @property
    def circuit_output(self) -> str:
        """What the simulator must return for this generator: ``probs`` or ``amplitudes``."""
        return "amplitudes" if self.config.transform == "amplitude" else "probs"

    def measure(self) -> torch.Tensor:
        """This layer's circuit outputs (probabilities or amplitudes, C_out x 2^n), simulated on their own."""
        c = self.config
        return simulate(self.angles, self.spec, backward=c.backward, max_block=c.max_block, engine=c.engine,
                        output=self.circuit_output)

    def forward(self) -> torch.Tensor:
        """The generated weight (circuits simulated for this layer alone; `hqctf.qpg.bank` batches layers)."""
        return self.weight(self.measure() if self.uses_circuit else None)

    @torch.no_grad()
    def calibrate(self, target_std: float) -> None:
        """Set the initial generated weight's standard deviation to ``target_std``.

        ``init="scale"`` sets the fixed multiplier; ``init="hyperfan"`` rescales the mapping network's output
        layer instead (every common-component option is positively homogeneous, so this is exact).
        """
        self.scale.fill_(1.0)
        self.log_gain.zero_()
        raw = self._generated(self.measure() if self.uses_circuit else None)
        factor = target_std / raw.std().clamp_min(1e-12).item()
        if self.config.init == "scale":
            self.scale.fill_(factor)
        else:
            for p in self.mapping.output_parameters():
                p.mul_(factor)

    def transform(self, measured: torch.Tensor) -> torch.Tensor:
        """The per-basis-state input of the mapping network from circuit probabilities (or amplitudes)."""
        n, c = self.spec.n_qubits, self.config
        if c.transform == "scaled":
            return measured * (1 << n) - 1
        if c.transform == "sqrt":
            return (measured.clamp_min(1e-30) * (1 << n)).sqrt()
        if c.transform == "log":
            return torch.log(measured * (1 << n) + 0.01)
        if c.transform == "amplitude":
            return measured * math.sqrt(1 << n)
        q = (c.qt_beta * torch.tanh(c.qt_gamma * (1 << (n - 1)) * measured) + 1e-6) ** c.qt_alpha
        return q - q.mean(-1, keepdim=True)

    def inputs(self, measured: torch.Tensor | None) -> torch.Tensor:
        """Mapping-network inputs (C_out, n_states): transformed circuit outputs, the embedding's projection, or
        the transformed softmax of that projection (logits ~ N(0, 1) at the start: lognormal probabilities whose
        spread is close to a random real state's, var(2^n p) = e - 1 against 2)."""
        if self.config.inputs == "embedding":
            return self.embedding @ self.projection
        if self.config.inputs == "softmax":
            return self.transform(torch.softmax(self.embedding @ self.projection, -1))
        return self.transform(measured)[:, : self.n_states]

    def _generated(self, measured: torch.Tensor | None) -> torch.Tensor:
        w = self.mapping(self.inputs(measured))[:, : self.per_row]
        if self.rows > 1 and self.config.common == "balance":
            w = balance_common_component(w)
        elif self.rows > 1 and self.config.common in ("subtract", "learned"):
            w = w - w.mean(0, keepdim=True)
        if self.config.common == "learned":
            w = w + self.common_row
        return w * (self.scale * self.log_gain.exp())

    def weight(self, measured: torch.Tensor | None) -> torch.Tensor:
        """Weight tensor of ``shape`` from this layer's circuit outputs (C_out, 2^n); None for embedding inputs."""
        w = from_matrix(self._generated(measured), self.shape, self.out_dim)
        return w + self.base if self.config.residual else w

    @staticmethod
    def trainable_count(shape: tuple[int, ...], out_dim: int, config: QPGConfig) -> int:
        """Trainable parameters: C_out n L G angles (or embedding numbers) + mapping network + gains (+ the
        learned common row)."""
        rows, per_row = weight_rows(tuple(shape), out_dim)
        n = qubits_for(per_row, config.chunk)
        spec = CircuitSpec(n, config.n_layers, tuple(config.rotations), config.entangler, config.ring)
        widths = (n, *config.mapping_hidden, config.chunk)
        mapping = sum(a * b + b for a, b in zip(widths[:-1], widths[1:])) + widths[1]
        inputs = 0 if config.inputs == "frozen" else rows * spec.n_params
        common = per_row if config.common == "learned" else 0
        return inputs + mapping + (rows if config.gain == "channel" else 1) + common
