"""mimic: test-time blind image recovery with a GAN prior and a corruption-mimicking surrogate (MimicGAN)."""
__version__ = "0.1.0"

from .api import Recovery, recover  # noqa: E402
from .corruptions import Corruption, get_corruption, list_corruptions  # noqa: E402
from .engine import MimicConfig, solve  # noqa: E402
from .priors import Prior, list_priors, load_prior  # noqa: E402
from .tasks import Task, get_task, list_tasks  # noqa: E402

__all__ = [
    "__version__",
    "recover",
    "Recovery",
    "MimicConfig",
    "solve",
    "Task",
    "get_task",
    "list_tasks",
    "Corruption",
    "get_corruption",
    "list_corruptions",
    "Prior",
    "load_prior",
    "list_priors",
]
