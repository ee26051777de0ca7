"""Defaults shared by every experiment config; each config file overrides what it varies."""
import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.source = 'voice_assistant'      # voice_assistant | folder | librispeech | librispeech_dir
  c.data.corpus = 'tiny'                 # builder config of voice_assistant: tiny | small | full
  c.data.data_dir = ''                   # '' -> asr.data.voice_assistant.corpus.DEFAULT_DATA_DIR
  c.data.train_split = 'base_train'
  c.data.eval_split = 'base_test'        # held-out voices
  c.data.extra_eval_splits = ''          # more splits evaluated during training, e.g. base_test_seen
  c.data.folder = ''                     # source=folder: audio folder (+ transcripts file)
  c.data.transcripts = ''
  # source=librispeech_dir: the LibriSpeech folder holding train-clean-100, dev-clean, ...; the
  # split keys then name those folders, '+'-joined for several in one split.
  c.data.librispeech_dir = ''
  c.data.bucket_seconds = (2.0, 4.0, 6.0, 8.0)
  c.data.chars_per_second = 25.0
  c.data.stats_utterances = 200          # utterances for the global feature mean/std
  # Audio seconds per training batch: each bucket's batch size fills about that much (short
  # utterances in larger batches); 0 = `train.batch_size` rows in every bucket.
  c.data.batch_seconds = 0.0
  c.data.cache_features = True           # log-mel of the train split computed once
  # source=librispeech_dir: the train split's index in memory, its audio read from disk per
  # batch (asr.data.batching, lazy); needs cache_features=False.
  c.data.lazy_audio = False
  # Training batches built ahead by a background thread (0 = built in the training loop).
  c.data.prefetch_batches = 0
  # 'chars' (asr.text.CharTokenizer) or 'pieces:PATH', a sentencepiece model trained by
  # `python -m asr.text_pieces` (README "LibriSpeech"); the model's vocabulary follows it.
  c.data.tokenizer = 'chars'

  c.frontend = ml_collections.ConfigDict()
  c.frontend.num_mels = 80
  c.frontend.window_ms = 25.0
  c.frontend.hop_ms = 10.0
  c.frontend.stack = 3                   # 3 x 10 ms frames stacked ...
  c.frontend.stride = 3                  # ... and subsampled: 30 ms encoder frames
  c.frontend.spec_augment = True
  # Vocal-tract-length perturbation in training: the mel axis warped by alpha ~ U[1-w, 1+w] per
  # utterance (frontend.vtlp), a new "speaker" every step; 0 = off.
  c.frontend.vtlp_warp = 0.0
  # Causal mean normalisation after the global one (frontend.causal_mean_norm): each frame minus
  # the running mean of its utterance so far, starting from `cmn_prior_frames` frames at the
  # global mean; streams compute the same.
  c.frontend.causal_cmn = False
  c.frontend.cmn_prior_frames = 100.0
  c.frontend.freq_masks = 2
  c.frontend.freq_mask_width = 15
  c.frontend.time_masks = 2
  c.frontend.time_mask_ratio = 0.05

  c.model = ml_collections.ConfigDict()
  # Every encoder is the branching encoder (amortized/encoder.py); one branch is a baseline
  # (dense, pruned or factorized), so every model has the same parameter layout.
  c.model.encoder = ml_collections.ConfigDict()
  c.model.encoder.layers = 2
  c.model.encoder.units = 128
  c.model.encoder.proj = 0
  c.model.encoder.branches = 'main:dense'  # name:kind[:budget],...  e.g. slow:dense,fast:sparse:0.3
  c.model.encoder.lstm_impl = 'auto'       # auto (= scan: faster on an H100) | scan | cudnn
  c.model.encoder.prune_epochs = 3         # sparse branches: gradual pruning over these rounds
  c.model.encoder.prune_every = 0          # steps per pruning round; 0 = an epoch
  # Sparse branches pruned in row segments of this many output columns, the same count in every
  # segment (0 = element-wise): streaming then runs them in a grouped sparse format, in which a
  # 10% 3 x LSTM-192 branch streams in under 0.1x the dense branch's time on one CPU thread
  # (README "Performance"; 32 or 64: smaller groups gather more and run slower).
  c.model.encoder.sparse_group = 0
  c.model.encoder.init_from = ''           # workdir of a trained model: SVD / copy initialisation
  # The simulated single-thread device that every model's latency (UPL) is measured on.
  c.model.encoder.device_flops = 0.0       # FLOP/s; 0 = auto from full_model_rtf
  c.model.encoder.full_model_rtf = 1.5     # auto rate: the dense model needs 1.5x real time
  c.model.encoder.extra_frame_flops = 0.0  # decoder work per frame counted by the simulator
  # Keys that only a routed encoder (2+ branches) reads; validate.py refuses changed values on
  # a single branch, where they would silently do nothing.
  c.model.encoder.routing = ml_collections.ConfigDict()
  r = c.model.encoder.routing
  r.arbitrator_hidden = 32
  r.temperature_start = 1.0
  r.temperature_end = 0.01
  r.anneal_steps = 1000          # geometric annealing of the routing temperature
  r.gumbel_hard = True           # training mix: straight-through one-hot | soft sample
  r.loss_variant = 'backlog'     # amortized_loss.VARIANTS, e.g. backlog | two_sided
  r.lambda_cost = 0.0
  r.lambda_amr = 0.0
  r.backlog_threshold = 0.1      # seconds of pending audio where g(b) reaches 0
  r.g_shape = 'linear'
  r.force_branch = ''            # inference ablation: every frame to this branch
  c.model.pred_embed_dim = 32
  c.model.pred_units = 64
  c.model.joint_dim = 64
  # A CTC head on the encoder: without it the RNN-T on this corpus settles on emitting every
  # label at the first frames from the prediction network alone (an LM; measured, README).
  c.model.ctc_weight = 0.5
  c.model.ctc_upsample = 1               # CTC outputs per encoder frame (2 keeps 30 ms at 60 ms)
  # Pruned RNN-T joint (asr/rnnt/pruned.py): the joint runs on this many label positions per
  # frame, chosen by a simple additive joint trained with weight simple_loss_weight; 0 = the
  # joint at every lattice cell.
  c.model.prune_range = 0
  c.model.simple_loss_weight = 0.5

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 16
  c.train.steps = 300
  c.train.lr = 5e-3            # small LSTM RNN-Ts learn far faster at 5e-3 than 2e-3 (measured)
  c.train.final_lr_ratio = 0.05
  c.train.warmup_steps = 50
  c.train.clip = 5.0
  c.train.frozen = ''       # kept at their initial values, e.g. predictor,joint
  c.train.log_every = 10
  c.train.eval_every = 100
  c.train.checkpoint_every = 100
  c.train.keep_checkpoints = 3
  c.train.nan_policy = 'skip'            # skip (count the step) | stop (message + exit)
  # A unix time (time.time()) after which the step then running is the last: checkpoint,
  # evaluation and summary as at `steps` (tools/gpu_oneshot.sh sets it from its stage's end).
  # 0 = none. The learning rate still follows `steps`: choose steps that fit, this is the guard.
  c.train.deadline = 0.0

  c.bench = ml_collections.ConfigDict()    # launch.py --mode=bench
  c.bench.steps = 20
  c.bench.warmup = 3
  c.bench.loss_shapes = ((8, 100, 20, 29),)
  c.bench.loss_reps = 5
  c.bench.stream_utterances = 4
  c.bench.stream_seconds = 4.0
  c.bench.trained_workdir = ''            # time streaming with trained weights and test audio
  # Side by side with PyTorch (experiments/reference.py): '' | lstm_ctc | rnnt | rnnt_loss.
  c.bench.reference = ''
  c.bench.reference_shape = ml_collections.ConfigDict(dict(
      layers=4, units=320, input_dim=80, batch=16, frames=150, labels=40, vocab=29))

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 16
  c.eval.max_utterances = 200            # 0 = the whole split
  c.eval.beam_width = 1                  # > 1: beam search instead of greedy
  c.eval.max_symbols_per_frame = 3
  return c
