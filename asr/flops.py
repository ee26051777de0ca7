"""Analytic FLOPs per encoder frame (batch 1, one time step), for latency and cost reporting.

Convention:
- a multiply-add is 2 FLOPs: y = x @ W with W of shape [m, n] costs 2*m*n ('dense'); with a
  pruned W only the nonzeros are multiplied, 2*nnz ('sparse'); a rank-r factorization
  W = U @ V (U [m, r], V [r, n]) applied as (x @ U) @ V costs 2*r*(m + n) ('factorized');
- an element-wise add, multiply or max is 1 FLOP per element (a bias add is n FLOPs, relu 1);
- a sigmoid or tanh is TRANSCENDENTAL_FLOPS = 4 FLOPs per element (XLA's cost analysis counts a
  logistic as 3 flops + 1 transcendental and a tanh as 1 transcendental; 4 covers both).

The LSTM step counted is the lead's cell:
    gates = x @ W_x + h @ W_h + b                (4H outputs; two matmuls, one add, one bias)
    i, f, g, o = split(gates)
    c' = sigmoid(f) * c + sigmoid(i) * tanh(g)   (3 sigmoids + 1 tanh; 2 muls + 1 add)
    h' = sigmoid(o) * tanh(c')                    (1 tanh, 1 mul)
    y  = h' @ W_p                                 (optional projection H -> P; y is both the
                                                   layer output and next step's recurrent input)
so W_h is [P, 4H] with a projection and [H, 4H] without.
"""
import dataclasses
from typing import Mapping, Optional, Sequence, Union

import jax
import numpy as np

TRANSCENDENTAL_FLOPS = 4
ACTIVATION_FLOPS = {None: 0, 'linear': 0, 'relu': 1, 'sigmoid': TRANSCENDENTAL_FLOPS,
                    'tanh': TRANSCENDENTAL_FLOPS}
KINDS = ('dense', 'sparse', 'factorized')
LSTM_MATRICES = ('input', 'recurrent', 'proj')


class FlopsSpecError(ValueError):
  """A layer or matrix description the counter cannot use."""


def matmul_flops(m: int, n: int, kind: str = 'dense', nnz: Optional[int] = None,
                 rank: Optional[int] = None) -> int:
  """FLOPs of one vector times an [m, n] matrix."""
  if kind == 'dense':
    return 2 * m * n
  if kind == 'sparse':
    if nnz is None or not 0 <= nnz <= m * n:
      raise FlopsSpecError(f'flops: sparse [{m}, {n}] matrix needs 0 <= nnz <= {m * n}, '
                           f'got nnz={nnz!r}')
    return 2 * int(nnz)
  if kind == 'factorized':
    if rank is None or rank < 1:
      raise FlopsSpecError(f'flops: factorized [{m}, {n}] matrix needs rank >= 1, '
                           f'got rank={rank!r}')
    return 2 * int(rank) * (m + n)
  raise FlopsSpecError(f'flops: kind={kind!r} not in {KINDS}')


def _activation_flops(activation) -> int:
  if activation not in ACTIVATION_FLOPS:
    raise FlopsSpecError(f'flops: activation={activation!r} not in '
                         f'{sorted(map(str, ACTIVATION_FLOPS))}')
  return ACTIVATION_FLOPS[activation]


def dense_flops(input_dim: int, output_dim: int, bias: bool = True, activation=None,
                kind: str = 'dense', nnz: Optional[int] = None,
                rank: Optional[int] = None) -> int:
  """y = act(x @ W + b)."""
  return (matmul_flops(input_dim, output_dim, kind, nnz, rank)
          + (output_dim if bias else 0) + output_dim * _activation_flops(activation))


def mlp_flops(dims: Sequence[int], activation: str = 'relu', final_activation=None,
              bias: bool = True, kinds: Optional[Sequence[str]] = None,
              nnz: Optional[Sequence[Optional[int]]] = None,
              ranks: Optional[Sequence[Optional[int]]] = None) -> int:
  """Dense layers dims[0] -> dims[1] -> ... -> dims[-1]; `activation` after all but the last,
  `final_activation` after the last. kinds/nnz/ranks: one entry per layer (None: dense)."""
  num_layers = len(dims) - 1
  if num_layers < 1:
    raise FlopsSpecError(f'flops: an MLP needs at least two dims, got dims={list(dims)!r}')
  kinds = list(kinds) if kinds is not None else ['dense'] * num_layers
  nnz = list(nnz) if nnz is not None else [None] * num_layers
  ranks = list(ranks) if ranks is not None else [None] * num_layers
  if not len(kinds) == len(nnz) == len(ranks) == num_layers:
    raise FlopsSpecError(f'flops: MLP with {num_layers} layers got kinds={kinds!r}, '
                         f'nnz={nnz!r}, ranks={ranks!r}')
  total = 0
  for layer in range(num_layers):
    act = activation if layer < num_layers - 1 else final_activation
    total += dense_flops(dims[layer], dims[layer + 1], bias, act, kinds[layer], nnz[layer],
                         ranks[layer])
  return total


def lstm_layer_flops(input_dim: int, units: int, proj: Optional[int] = None,
                     kinds: Optional[Mapping[str, str]] = None,
                     nnz: Optional[Mapping[str, int]] = None,
                     ranks: Optional[Mapping[str, int]] = None) -> int:
  """One LSTM step (see the module docstring).

  kinds/nnz/ranks map 'input' (W_x [input_dim, 4H]), 'recurrent' (W_h [P or H, 4H]) and 'proj'
  (W_p [H, P]) to the matrix kind and its nnz or rank; missing entries are dense.
  """
  kinds, nnz, ranks = dict(kinds or {}), dict(nnz or {}), dict(ranks or {})
  unknown = (set(kinds) | set(nnz) | set(ranks)) - set(LSTM_MATRICES)
  if unknown:
    raise FlopsSpecError(f'flops: unknown LSTM matrix names {sorted(unknown)}; '
                         f'expected {LSTM_MATRICES}')
  if proj is None and 'proj' in (set(kinds) | set(nnz) | set(ranks)):
    raise FlopsSpecError('flops: LSTM spec names a proj matrix but proj=None')
  hidden = units
  recurrent_dim = proj if proj else hidden

  def mat(name, m, n):
    return matmul_flops(m, n, kinds.get(name, 'dense'), nnz.get(name), ranks.get(name))

  total = mat('input', input_dim, 4 * hidden) + mat('recurrent', recurrent_dim, 4 * hidden)
  total += 4 * hidden * 2                                  # gates add + bias add
  total += hidden * (4 * TRANSCENDENTAL_FLOPS + 4)         # 3 sigmoid, 2 tanh; 3 mul, 1 add
  if proj:
    total += mat('proj', hidden, proj)
  return total


@dataclasses.dataclass(frozen=True)
class LstmSpec:
  input_dim: int
  units: int
  proj: Optional[int] = None
  kinds: Optional[Mapping[str, str]] = None
  nnz: Optional[Mapping[str, int]] = None
  ranks: Optional[Mapping[str, int]] = None

  def flops(self) -> int:
    return lstm_layer_flops(self.input_dim, self.units, self.proj, self.kinds, self.nnz,
                            self.ranks)


@dataclasses.dataclass(frozen=True)
class DenseSpec:
  input_dim: int
  output_dim: int
  bias: bool = True
  activation: Optional[str] = None
  kind: str = 'dense'
  nnz: Optional[int] = None
  rank: Optional[int] = None

  def flops(self) -> int:
    return dense_flops(self.input_dim, self.output_dim, self.bias, self.activation, self.kind,
                       self.nnz, self.rank)


@dataclasses.dataclass(frozen=True)
class MlpSpec:
  dims: Sequence[int]
  activation: str = 'relu'
  final_activation: Optional[str] = None
  bias: bool = True
  kinds: Optional[Sequence[str]] = None
  nnz: Optional[Sequence[Optional[int]]] = None
  ranks: Optional[Sequence[Optional[int]]] = None

  def flops(self) -> int:
    return mlp_flops(self.dims, self.activation, self.final_activation, self.bias, self.kinds,
                     self.nnz, self.ranks)


_SPEC_TYPES = {'lstm': LstmSpec, 'dense': DenseSpec, 'mlp': MlpSpec}
LayerSpec = Union[LstmSpec, DenseSpec, MlpSpec, Mapping]


def _as_spec(spec: LayerSpec):
  if isinstance(spec, (LstmSpec, DenseSpec, MlpSpec)):
    return spec
  if isinstance(spec, Mapping):
    fields = dict(spec)
    kind = fields.pop('type', None)
    if kind not in _SPEC_TYPES:
      raise FlopsSpecError(f"flops: layer spec type={kind!r} not in {sorted(_SPEC_TYPES)}")
    try:
      return _SPEC_TYPES[kind](**fields)
    except TypeError as e:
      raise FlopsSpecError(f'flops: bad {kind} layer spec {spec!r}: {e}') from None
  raise FlopsSpecError(f'flops: cannot read layer spec {spec!r}')


def encoder_frame_flops(layer_specs: Sequence[LayerSpec]) -> int:
  """Sum of the per-frame FLOPs of the layers; each a *Spec or a dict with 'type' in
  {'lstm', 'dense', 'mlp'} and that spec's fields, e.g.
  {'type': 'lstm', 'input_dim': 240, 'units': 640, 'kinds': {'input': 'sparse'}, ...}."""
  return int(sum(_as_spec(spec).flops() for spec in layer_specs))


def count_nnz(params, masks=None):
  """Nonzero counts per leaf, as a pytree of ints with the structure of `params`.

  With `masks` (a pytree of the same structure, or with None leaves where unmasked), a masked
  leaf counts the nonzeros of params * mask, so a weight that is zero under its mask is dropped
  even where the dense value is not.
  """
  if masks is None:
    return jax.tree.map(lambda p: int(np.count_nonzero(np.asarray(p))), params)

  def count(m, p):
    p = np.asarray(p)
    if m is None:
      return int(np.count_nonzero(p))
    m = np.asarray(m)
    if m.shape != p.shape:
      raise FlopsSpecError(f'flops: mask shape {m.shape} != param shape {p.shape}')
    return int(np.count_nonzero(p * m))

  # The masks tree leads so that its None leaves stay leaves (params holds arrays there).
  return jax.tree.map(count, masks, params, is_leaf=lambda x: x is None)
