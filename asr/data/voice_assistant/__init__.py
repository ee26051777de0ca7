"""The embedded synthetic speech corpus `voice_assistant`, from text to a tfds builder.

  textgen   sentences from the templates and slot lists in `text/`
  engines   the TTS engines installed here: discovery, base voices, synthesis
  plan      who says what in which split, decided before any audio is made
  synth     planned utterances -> audio (pool workers)
  augment   speed, reverberation, noise, gain (numpy/scipy)
  builder   the tfds builder `VoiceAssistant` and its configs (tiny, small, full)
  corpus    `build` / `load`, and the build command:
              python -m asr.data.voice_assistant.corpus --config=tiny|demo|small|full
  stats     hours, speakers and vocabulary of a built config:
              python -m asr.data.voice_assistant.stats --config=small

Nothing is imported here, so that running a module of the package with `python -m` does not
import it twice.
"""
