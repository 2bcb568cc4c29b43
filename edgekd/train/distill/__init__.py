"""Knowledge distillation: losses, the fit loop and the teacher/student/simple experiment.

``run_experiment(config)`` is the API behind ``edgekd distill``.
"""
from edgekd.train.distill.experiment import Experiment, run_experiment

__all__ = ["Experiment", "run_experiment"]
