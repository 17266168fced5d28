"""The training side: recipes run into run directories (toolkit.train.run), the loop (loop), the tasks
(tasks, anomaly, gan; registered in registry), checkpoints and plots. Imports torch.

`from toolkit.train import train, evaluate_run` is the public API behind `toolkit train` and `toolkit eval`.
"""

from toolkit.train import anomaly, gan, tasks  # noqa: F401  (each registers its tasks)
from toolkit.train.run import TrainResult, evaluate_run, next_run_dir, resolve_recipe, train
from toolkit.train.tasks import baseline_metrics

__all__ = ["TrainResult", "baseline_metrics", "evaluate_run", "next_run_dir", "resolve_recipe", "train"]
