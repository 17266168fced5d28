"""The training side: recipes trained into run directories, and re-scored. Imports torch.

Modules: run (the API), loop, optim, tasks, anomaly, gan and contrastive (the tasks, registered in registry),
checkpoint, augment, finetune and transfer (init_from), and plots.

`from toolkit.train import train, evaluate_run` is the public API behind `toolkit train` and `toolkit eval`.
"""

from toolkit.train import anomaly, contrastive, gan, tasks  # noqa: F401  (each registers its tasks)
from toolkit.train.run import TrainResult, evaluate_run, next_run_dir, resolve_recipe, train
from toolkit.train.tasks import baseline_metrics

__all__ = ["TrainResult", "baseline_metrics", "evaluate_run", "next_run_dir", "resolve_recipe", "train"]
