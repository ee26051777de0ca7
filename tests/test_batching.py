"""Length buckets: fixed shapes, deterministic order from (seed, step), counted skips."""
import numpy as np

from asr.data import batching


def _examples():
  rng = np.random.default_rng(0)
  ex = [{'audio': (rng.standard_normal(int(s * 16000)) * 1000).astype(np.int16),
         'transcript': 'hello world', 'id': f'u{i}'} for i, s in enumerate([0.5, 1.5, 1.9, 3.0] * 3)]
  ex += [{'audio': np.zeros(0, np.int16), 'transcript': 'empty', 'id': 'empty'},
         {'audio': np.ones(8000, np.int16), 'transcript': '', 'id': 'notext'},
         {'audio': np.ones(8000, np.int16), 'transcript': 'Caps!', 'id': 'caps'},
         {'audio': np.ones(16000 * 9, np.int16), 'transcript': 'long', 'id': 'toolong'},
         {'audio': np.ones(8000, np.int16), 'transcript': 'x' * 200, 'id': 'manylabels'},
         {'audio': np.full(8000, np.nan, np.float32), 'transcript': 'nan audio', 'id': 'nan'}]
  return ex


def test_bad_examples_are_skipped_counted_and_named():
  data = batching.Dataset(_examples(), batching.Buckets((1.0, 2.0, 4.0), 25.0))
  assert len(data) == 13          # 12 good + the NaN one (cleaned to silence, not dropped)
  summary = data.skipped.summary('test')
  assert data.skipped.count == 5
  for name in ('empty', 'notext', 'caps', 'toolong', 'manylabels'):
    assert name in summary
  assert not np.isnan(data.audio[-1].astype(float)).any()


def test_batches_have_bucket_shapes_and_padding():
  buckets = batching.Buckets((1.0, 2.0, 4.0), 25.0)
  data = batching.Dataset(_examples()[:12], buckets)
  shapes = set()
  for step in range(12):
    b = data.train_batch(step, 4, seed=1)
    shapes.add(b['audio'].shape)
    for row in range(4):
      valid = b['audio_paddings'][row] == 0
      assert b['weights'][row] in (0.0, 1.0)
      assert (b['audio'][row][~valid] == 0).all()
  assert shapes <= {(4, buckets.samples(i)) for i in range(3)}


def test_order_is_a_pure_function_of_seed_and_step():
  make = lambda: batching.Dataset(_examples()[:12], batching.Buckets((1.0, 2.0, 4.0), 25.0))
  a, b = make(), make()
  per_epoch = a.batches_per_epoch(4)
  for step in [0, 1, per_epoch, per_epoch + 1, 3 * per_epoch]:
    np.testing.assert_array_equal(a.train_batch(step, 4, 7)['audio'],
                                  b.train_batch(step, 4, 7)['audio'])
  # every example once per epoch
  seen = []
  for step in range(per_epoch):
    batch = a.train_batch(step, 4, 7)
    seen += [tuple(row[:50]) for row, w in zip(batch['audio'], batch['weights']) if w]
  assert len(seen) == 12


def test_ctc_impossible_labels_are_skipped():
  ex = [{'audio': np.ones(16000, np.int16), 'transcript': 'ab' * 10, 'id': 'ok'},
        {'audio': np.ones(3200, np.int16), 'transcript': 'aabb' * 5, 'id': 'too_many'}]
  data = batching.Dataset(ex, batching.Buckets((2.0,), 25.0), ctc_frame_seconds=0.03)
  assert data.ids == ['ok'] and 'too_many' in data.skipped.summary()
  assert 'CTC' in data.skipped.summary()


def test_evaluation_splits_keep_long_examples_in_an_extra_bucket():
  ex = [{'audio': np.ones(16000, np.int16), 'transcript': 'ab', 'id': 'short'},
        {'audio': np.full(40000, 7, np.int16), 'transcript': 'a long one', 'id': 'long'},
        {'audio': np.ones(0, np.int16), 'transcript': 'x', 'id': 'empty'}]
  buckets = batching.Buckets((2.0,), 25.0)
  train = batching.Dataset(ex, buckets)
  assert train.ids == ['short'] and 'long' in train.skipped.summary()
  test = batching.Dataset(ex, buckets, keep_long=True)
  assert test.ids == ['short', 'long'] and test.skipped.reasons == {'empty audio': ['empty']}
  batches = list(test.eval_batches(4))
  assert [list(i) for _, i in batches] == [[0], [1]]
  long_batch = batches[1][0]
  assert long_batch['audio'].shape == (4, 48000)       # 2.5 s padded to whole seconds
  np.testing.assert_array_equal(long_batch['audio'][0, :40000], 7)
  assert long_batch['audio_paddings'][0, 40000:].all() and not long_batch['weights'][1:].any()
  assert train.batches_per_epoch(4) == test.batches_per_epoch(4) == 1   # never trained on


def test_batch_sizes_fill_the_audio_seconds_per_bucket():
  buckets = batching.Buckets((1.0, 2.0, 3.0, 8.0), 25.0)
  assert batching.bucket_batch_sizes(buckets, 16) == (16, 16, 16, 16)
  assert batching.bucket_batch_sizes(buckets, 16, batch_seconds=24.0) == (24, 12, 8, 3)
  # in multiples of the devices, never fewer rows than devices
  assert batching.bucket_batch_sizes(buckets, 16, 24.0, multiple=4) == (24, 12, 8, 4)
  data = batching.Dataset(_examples()[:12], buckets)
  sizes = (6, 3, 2, 1)
  members = np.bincount(data.bucket, minlength=4)
  assert data.batches_per_epoch(sizes) == sum(-(-m // s) for m, s in zip(members, sizes))
  seen = []
  for step in range(data.batches_per_epoch(sizes)):
    batch = data.train_batch(step, sizes, seed=3)
    bucket = [b for b in range(4) if batch['audio'].shape[1] == buckets.samples(b)][0]
    assert batch['weights'].shape == (sizes[bucket],)
    seen += [i for i in range(len(data)) if data.bucket[i] == bucket]
  assert set(seen) == set(range(len(data)))         # every example in the epoch


def test_labels_are_padded_to_the_buckets_longest_label():
  ex = _examples()[:12]
  ex[0] = dict(ex[0], transcript='a much longer transcript than the others')
  data = batching.Dataset(ex, batching.Buckets((1.0, 2.0, 4.0), 50.0))
  for b in range(3):
    longest = max(len(data.labels[i]) for i in range(len(data)) if data.bucket[i] == b)
    assert data.batch([], b, 2)['labels'].shape == (2, -(-longest // 8) * 8)


def test_cached_log_mel_equals_the_audios_log_mel():
  """Batches built from the cache hold, at every valid frame, what the frontend computes from
  the same batch's audio (the reference), and the same padding."""
  from asr import frontend
  import jax
  data = batching.Dataset(_examples()[:12], batching.Buckets((1.0, 2.0, 4.0), 25.0))
  reference = {b: data.batch(np.flatnonzero(data.bucket == b)[:3], b, 4) for b in range(3)}
  fn = jax.jit(lambda a, p: frontend.log_mel(a, p, num_mels=16))
  data.cache_log_mel(fn, batch_size=2)      # other batch compositions than the reference's
  for b, ref in reference.items():
    cached = data.batch(np.flatnonzero(data.bucket == b)[:3], b, 4)
    assert 'audio' not in cached
    feats, pads = (np.asarray(x) for x in fn(ref['audio'], ref['audio_paddings']))
    np.testing.assert_array_equal(cached['log_mel_paddings'], pads)
    valid = pads == 0
    np.testing.assert_allclose(cached['log_mel'][valid], feats[valid], rtol=1e-6, atol=1e-6)
    assert (cached['log_mel'][~valid] == 0).all()
