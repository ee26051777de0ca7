"""LibriSpeech 960 h from its distribution folders (GPU): a paper-size 5 x LSTM-640 RNN-T.

  python launch.py --config=experiments/configs/librispeech.py --workdir=workdirs/librispeech \
      --config.data.librispeech_dir=/path/LibriSpeech
  python launch.py --config=experiments/configs/librispeech.py --workdir=workdirs/librispeech \
      --config.data.librispeech_dir=/path/LibriSpeech --mode=eval \
      --config.data.eval_split=test-other

Trains on train-clean-100+train-clean-360+train-other-500 and scores the whole of dev-clean,
dev-other, test-clean and test-other at every evaluation. Not run yet: no step time, memory
figure or WER is recorded for it, and lr and steps are untuned starting points. The train split
is lazy (`data.lazy_audio`): its index (paths, lengths from the FLAC headers, transcripts) is in
memory and each batch's FLACs are decoded when it is built, a few batches ahead in a background
thread (`data.prefetch_batches`); held in memory it would take about 111 GB for 960 h. The
evaluation splits are held in memory (about 2.4 GB for the four). Each split's report of skipped
files is printed as it loads.

Word pieces instead of characters (`data.tokenizer`): train a sentencepiece model on the training
transcripts once, then name it; the model's output layer follows its size.

  python -m asr.text_pieces train --vocab_size=256 --out=workdirs/ls-pieces/tokenizer.model \
      --librispeech_dir=/path/LibriSpeech --splits=train-clean-100+train-clean-360+train-other-500
  python launch.py --config=experiments/configs/librispeech.py --workdir=workdirs/ls-pieces \
      --config.data.librispeech_dir=/path/LibriSpeech \
      --config.data.tokenizer=pieces:workdirs/ls-pieces/tokenizer.model
"""
from experiments.configs import common


def get_config():
  c = common.base_config()
  c.data.source = 'librispeech_dir'
  c.data.librispeech_dir = ''            # required: the folder holding train-clean-100, ...
  c.data.train_split = 'train-clean-100+train-clean-360+train-other-500'
  c.data.eval_split = 'dev-clean'
  c.data.extra_eval_splits = 'dev-other,test-clean,test-other'
  # LibriSpeech was segmented into utterances of at most about 35 s; a longer training one is
  # skipped and reported, a longer evaluation one goes to an extra bucket.
  c.data.bucket_seconds = (4.0, 8.0, 12.0, 16.0, 20.0, 25.0, 30.0, 35.0)
  # Twice the 32 x 8 s batch of the paper-size benchmark (README "Performance").
  c.data.batch_seconds = 512.0
  # 960 h of int16 audio would need about 111 GB; the lazy split holds only its index.
  c.data.lazy_audio = True
  # The log-mel cache would hold every utterance's features in memory, which the lazy split avoids.
  c.data.cache_features = False
  # Decoding a batch's FLACs costs about 0.15 s of one core per 512 s of audio (a synthetic 16 s
  # FLAC read by asr.data.folder.read_audio on the 2-core CPU machine): done ahead in a thread,
  # it overlaps the device's step instead of adding to it.
  c.data.prefetch_batches = 4
  # The paper size of experiments/sweeps/amnet_full.py.
  c.model.encoder.layers = 5
  c.model.encoder.units = 640
  c.model.pred_units = 320
  c.model.joint_dim = 320
  # A full joint over 35 s of 30 ms frames and a 35 s transcript does not fit in memory at any
  # useful batch; the pruned one computes 5 label positions per frame (as configs/base.py).
  c.model.prune_range = 5
  c.train.steps = 150000
  c.train.lr = 2e-3
  c.train.warmup_steps = 5000
  c.train.log_every = 100
  c.train.eval_every = 10000
  c.train.checkpoint_every = 1000
  c.eval.batch_size = 64
  c.eval.max_utterances = 0              # the whole split
  return c
