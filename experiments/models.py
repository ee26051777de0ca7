"""Config -> model. The one place that knows every encoder family."""
from asr import features
from asr import lstm
from asr import model as model_lib
from asr import text


def build_encoder(cfg):
  e = cfg.model.encoder
  if e.name == 'lstm':
    return lstm.LSTMEncoder(layers=e.layers, units=e.units, proj=e.proj, kind=e.kind,
                             budget=e.budget, impl=e.lstm_impl)
  if e.name == 'amnet':
    from amortized import encoder as amnet  # pylint: disable=g-import-not-at-top
    return amnet.from_config(cfg, features.feature_dim(cfg.frontend),
                             features.frame_seconds(cfg.frontend))
  raise ValueError(f'model.encoder.name={e.name!r} is not one of lstm, amnet')


def build_model(cfg) -> model_lib.RNNT:
  m = cfg.model
  return model_lib.RNNT(encoder=build_encoder(cfg), vocab_size=text.CharTokenizer.vocab_size,
                        pred_embed_dim=m.pred_embed_dim, pred_units=m.pred_units,
                        joint_dim=m.joint_dim, ctc_head=m.ctc_weight > 0)
