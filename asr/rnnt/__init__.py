"""RNN-T loss (`asr.rnnt.loss`) and decoding (`asr.rnnt.decode`)."""
from asr.rnnt.decode import beam_search
from asr.rnnt.decode import beam_search_batch
from asr.rnnt.decode import compact
from asr.rnnt.decode import DecodeError
from asr.rnnt.decode import greedy_decode
from asr.rnnt.decode import greedy_frames
from asr.rnnt.decode import greedy_init
from asr.rnnt.decode import greedy_step
from asr.rnnt.decode import GreedyState
from asr.rnnt.loss import gather_logprobs
from asr.rnnt.loss import joint_logprobs_chunked
from asr.rnnt.loss import rnnt_loss
from asr.rnnt.loss import rnnt_loss_from_logprobs
from asr.rnnt.loss import rnnt_loss_lean
from asr.rnnt.loss import RNNTLabelError
from asr.rnnt.loss import RNNTShapeError
