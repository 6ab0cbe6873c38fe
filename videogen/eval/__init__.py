"""Evaluation: the built-in world's judge (``judge.py``), FVD with a Kinetics-400 I3D network (``fvd.py``) and
``videogen eval`` (``evaluate.py``: tokenizer and LM workdirs, generated and reconstructed clips)."""
