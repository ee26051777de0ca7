"""Config -> model. Every encoder is the branching encoder; one branch is a baseline."""
from amortized import encoder as amnet
from asr import features
from asr import model as model_lib
from asr import text_pieces


def build_encoder(cfg) -> amnet.AmNetEncoder:
  return amnet.from_config(cfg, features.feature_dim(cfg.frontend),
                           features.frame_seconds(cfg.frontend))


def build_model(cfg) -> model_lib.RNNT:
  model_cfg = cfg.model
  # The output layer is as wide as the tokenizer's vocabulary (blank included).
  vocab_size = text_pieces.from_config(cfg).vocab_size
  return model_lib.RNNT(encoder=build_encoder(cfg), vocab_size=vocab_size,
                        pred_embed_dim=model_cfg.pred_embed_dim,
                        pred_units=model_cfg.pred_units, joint_dim=model_cfg.joint_dim,
                        ctc_head=model_cfg.ctc_weight > 0,
                        ctc_upsample=model_cfg.ctc_upsample, prune_range=model_cfg.prune_range)
