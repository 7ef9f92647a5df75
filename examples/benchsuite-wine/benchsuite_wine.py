# benchsuite_wine.py
"""wine: scikit-learn's wine recognition data (178 wines, 13 measurements, 3 cultivars) as a task."""

from functools import lru_cache

import numpy as np
import torch
from torch import nn

from benchsuite import Metric, Param, PreparedData, PrepareRequest, Recipe, Task, hookimpl
from benchsuite import evaluate_classification, prepare_in_memory


@lru_cache(maxsize=1)
def load_split():
    """A fixed stratified split (not the run's seed: every run tests on the same 54 wines),
    features standardised with the training split's mean and deviation. Cached per process."""
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split

    x, y = load_wine(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
    mean, std = x_train.mean(0), x_train.std(0)
    as_tensor = lambda a: torch.from_numpy(((a - mean) / std).astype(np.float32))  # noqa: E731
    return as_tensor(x_train), y_train.astype(np.int64), as_tensor(x_test), y_test.astype(np.int64)


class Wine(Task):
    name = "wine"
    summary = "scikit-learn wine recognition (13 features, 3 classes), small MLP"
    num_classes = 3
    input_kind = "vector"
    provides = frozenset({"trusted_set", "clean_validation"})  # prepare_in_memory serves both
    noise_kinds = ("none", "symmetric", "uniform")
    metrics = {"test_acc": Metric("top-1 accuracy on the 54 held-out wines")}
    primary_metric = "test_acc"
    parameters = {"width": Param(32, "hidden units", low=1)}

    def prepare(self, request: PrepareRequest) -> PreparedData:
        # validation split, trusted set and label noise, all as the request asks; recorded per run
        return prepare_in_memory(request, *load_split(), self.num_classes, info={"num_test": 54})

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(13, self.width), nn.ReLU(), nn.Linear(self.width, self.num_classes))

    def recipe(self) -> Recipe:
        return Recipe(epochs=30, batch_size=16, lr=0.05, momentum=0.9)

    def evaluate(self, model: nn.Module, data: PreparedData, device: torch.device) -> dict[str, float]:
        return evaluate_classification(model, data, batch_size=256)


@hookimpl
def register_tasks(register):
    register(Wine)
