"""Corruption operators (registry): the paper's six tasks, Pajot et al.'s, and Fashion-MNIST's."""
from .base import Corruption, get_corruption, list_corruptions, register_corruption
from . import paper, pajot, fmnist  # noqa: F401  (registration)

__all__ = ["Corruption", "get_corruption", "list_corruptions", "register_corruption"]
