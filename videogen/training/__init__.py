"""The training machinery both trainers share: the train loop skeleton (``loop.py``), config files and
overrides (``config.py``), checkpoints (``checkpointing.py``), meshes and shardings (``mesh.py``,
``distributed.py``), the optimizer (``optim.py``), metrics (``metrics_log.py``) and the trainers' command line
(``trainer_cli.py``)."""
