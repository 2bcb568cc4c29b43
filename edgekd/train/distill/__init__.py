"""Knowledge distillation: losses, the fit loop and the teacher/student/simple experiment.

``run_experiment(config)`` is the API behind ``edgekd distill``; ``reporter=EpochLines(sys.stderr)``
prints its progress a line per epoch.
"""
from edgekd.train.distill.experiment import Experiment, run_experiment
from edgekd.train.distill.progress import EpochLines

__all__ = ["EpochLines", "Experiment", "run_experiment"]
