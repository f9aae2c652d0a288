"""Sequences -> a trained, evaluated, registered model: streams and batches, the loop, losses,
metrics, baselines, the distributed launch and the champion decision (``jobs/train.py``,
``jobs/evaluate.py``, ``jobs/promote.py``)."""
