"""PyTorch references of this codebase's models, for side-by-side speed figures only.

Benchmark-only: nothing else imports it, and torch is not a dependency of the codebase
(`make bench-reference` installs it from requirements-bench.txt). `experiments/bench.py` runs it in
a subprocess with the same shapes as the JAX model it times, so both figures come from one run
on one machine. Prints one JSON line.

Models (`--model`):
  lstm_ctc   L x LSTM-H (nn.LSTM: cuDNN on a GPU) + linear + CTC, an Adam step;
  rnnt       the RNN-T of asr/model.py: LSTM encoder, embedding + LSTM predictor, additive joint
             (tanh), torchaudio's rnnt_loss, an Adam step (needs torchaudio);
  rnnt_loss  torchaudio's rnnt_loss forward + backward on random logits [B, T, U+1, V].

  python -m experiments.torch_reference --model=lstm_ctc --layers=4 --units=320 --batch=16 \
      --frames=150
"""
import json
import statistics
import time

from absl import app
from absl import flags

flags.DEFINE_enum('model', 'lstm_ctc', ['lstm_ctc', 'rnnt', 'rnnt_loss'], 'What to time.')
flags.DEFINE_integer('layers', 4, 'Encoder LSTM layers.')
flags.DEFINE_integer('units', 320, 'Encoder LSTM units.')
flags.DEFINE_integer('input_dim', 80, 'Input features per frame.')
flags.DEFINE_integer('batch', 16, 'Batch size.')
flags.DEFINE_integer('frames', 150, 'Encoder frames per utterance.')
flags.DEFINE_integer('labels', 40, 'Labels per utterance (U).')
flags.DEFINE_integer('vocab', 29, 'Vocabulary size, blank included.')
flags.DEFINE_integer('pred_embed_dim', 32, 'rnnt: predictor embedding size.')
flags.DEFINE_integer('pred_units', 64, 'rnnt: predictor LSTM units.')
flags.DEFINE_integer('joint_dim', 64, 'rnnt: joint size.')
flags.DEFINE_integer('steps', 20, 'Timed steps (the median is reported).')
flags.DEFINE_integer('warmup', 3, 'Untimed steps first.')
flags.DEFINE_string('device', 'auto', 'cpu | cuda | auto (cuda when available).')
FLAGS = flags.FLAGS


def _time(fn, steps, warmup, sync):
  for _ in range(warmup):
    fn()
  sync()
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    fn()
    sync()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def main(argv):
  del argv
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  device = FLAGS.device
  if device == 'auto':
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
  torch.manual_seed(0)
  b, t, u, v = FLAGS.batch, FLAGS.frames, FLAGS.labels, FLAGS.vocab
  x = torch.randn(b, t, FLAGS.input_dim, device=device)
  labels = torch.randint(1, v, (b, u), device=device, dtype=torch.int32)
  frame_lengths = torch.full((b,), t, dtype=torch.int32, device=device)
  label_lengths = torch.full((b,), u, dtype=torch.int32, device=device)
  record = {'figure': 'torch_reference', 'model': FLAGS.model, 'device': device,
            'torch': torch.__version__, 'threads': torch.get_num_threads()}

  if FLAGS.model == 'rnnt_loss':
    import torchaudio  # pylint: disable=g-import-not-at-top
    logits = torch.randn(b, t, u + 1, v, device=device, requires_grad=True)

    def step():
      loss = torchaudio.functional.rnnt_loss(logits, labels, frame_lengths, label_lengths,
                                              blank=0, reduction='sum')
      loss.backward()
    if device == 'cuda':
      torch.cuda.reset_peak_memory_stats()
    record['step_s'] = _time(step, FLAGS.steps, FLAGS.warmup, sync)
    if device == 'cuda':
      record['peak_memory_mb'] = torch.cuda.max_memory_allocated() / 2**20
    record['shape'] = [b, t, u, v]
    print(json.dumps(record))
    return

  encoder = nn.LSTM(FLAGS.input_dim, FLAGS.units, FLAGS.layers, batch_first=True).to(device)
  modules = [encoder]
  if FLAGS.model == 'lstm_ctc':
    head = nn.Linear(FLAGS.units, v).to(device)
    modules.append(head)
    ctc = nn.CTCLoss(blank=0, reduction='sum')

    def loss_fn():
      y, _ = encoder(x)
      logp = head(y).log_softmax(-1).transpose(0, 1)          # [T, B, V]
      return ctc(logp, labels, frame_lengths, label_lengths)
  else:
    import torchaudio  # pylint: disable=g-import-not-at-top
    embed = nn.Embedding(v, FLAGS.pred_embed_dim).to(device)
    pred_lstm = nn.LSTM(FLAGS.pred_embed_dim, FLAGS.pred_units, 1, batch_first=True).to(device)
    enc_proj = nn.Linear(FLAGS.units, FLAGS.joint_dim).to(device)
    pred_proj = nn.Linear(FLAGS.pred_units, FLAGS.joint_dim, bias=False).to(device)
    out = nn.Linear(FLAGS.joint_dim, v).to(device)
    modules += [embed, pred_lstm, enc_proj, pred_proj, out]
    prev = torch.nn.functional.pad(labels.long(), (1, 0))     # blank = start symbol

    def loss_fn():
      enc, _ = encoder(x)
      pred, _ = pred_lstm(embed(prev))
      logits = out(torch.tanh(enc_proj(enc)[:, :, None] + pred_proj(pred)[:, None]))
      return torchaudio.functional.rnnt_loss(logits, labels, frame_lengths, label_lengths,
                                             blank=0, reduction='sum')

  params = [p for m in modules for p in m.parameters()]
  optimizer = torch.optim.Adam(params, lr=1e-3)

  def step():
    optimizer.zero_grad(set_to_none=True)
    loss_fn().backward()
    torch.nn.utils.clip_grad_norm_(params, 5.0)
    optimizer.step()
  if device == 'cuda':
    torch.cuda.reset_peak_memory_stats()
  record['step_s'] = _time(step, FLAGS.steps, FLAGS.warmup, sync)
  if device == 'cuda':
    record['peak_memory_mb'] = torch.cuda.max_memory_allocated() / 2**20
  record['params'] = sum(p.numel() for p in params)
  print(json.dumps(record))


if __name__ == '__main__':
  app.run(main)
