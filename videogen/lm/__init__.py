"""Stage 2, the LM: a decoder-only transformer over ``[caption tokens | video codes]``.

* ``model.py`` -- the transformer (logical axis names, attention modes, KV cache, scanned layers);
* ``objectives.py`` -- sequences, masks and losses of next-token, MaskGIT and frame-causal MaskGIT;
* ``sampling.py`` -- the model-agnostic decoding loops (KV-cached next-token, MaskGIT, frame after frame,
  classifier-free guidance);
* ``core.py`` -- loading a trained LM and the one guided sampler (text-to-video, frame prediction and
  continuation windows all decode with it); its public names are this package's: ``from videogen.lm import
  load_lm, sample``;
* ``train_step.py`` -- the train state (born sharded), the jitted update and eval steps, the checkpoint items
  (run by videogen/train.py, timed by ``make bench``, compiled by ``videogen plan``).
"""

from videogen.lm.core import *  # noqa: F403 -- the package's API is core's public names
from videogen.lm.core import __all__  # noqa: F401
