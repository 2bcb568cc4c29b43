"""``edgekd sweep``: students × one teacher → distill, export, bench → Pareto fronts and a pick.

``run_sweep(config, students, out)`` is the API behind the command (:mod:`.run`); :mod:`.front`
holds the fronts and the pick, :mod:`.outputs` the sweep.json document, its table, markdown and plot.
"""
from edgekd.app.sweep.front import pareto_front, pick
from edgekd.app.sweep.plan import SweepOptions, canonical, parse_students
from edgekd.app.sweep.run import Sweep, run_sweep

__all__ = ["Sweep", "SweepOptions", "canonical", "pareto_front", "parse_students", "pick", "run_sweep"]
