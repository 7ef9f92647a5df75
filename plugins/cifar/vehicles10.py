"""vehicles10: the 10 vehicle classes of CIFAR-100 (GR/DM appendix), 5,000 train / 1,000 test.

The classes of superclasses vehicles_1 and vehicles_2, relabelled 0–9 in ascending CIFAR-100 fine
index: 0 bicycle (8), 1 bus (13), 2 lawn_mower (41), 3 motorcycle (48), 4 pickup_truck (58),
5 rocket (69), 6 streetcar (81), 7 tank (85), 8 tractor (89), 9 train (90). The papers train
ResNet-44 but do not state the schedule; the default takes their CIFAR-100 one (an assumption).
"""

from __future__ import annotations

import numpy as np

from benchsuite import Preset, hookimpl
from benchsuite.toolkit.datasets import DatasetError
from benchsuite_plugins.cifar.base import CIFAR100_STATS, CifarTask, cifar_parameters
from benchsuite_plugins.cifar.release import CifarData, read_cifar

#: CIFAR-100 fine indices of the vehicle classes, in the order of the Vehicles-10 labels.
VEHICLE_FINE_IDS = (8, 13, 41, 48, 58, 69, 81, 85, 89, 90)
VEHICLE_SUPERCLASSES = ("vehicles_1", "vehicles_2")


class Vehicles10(CifarTask):
    name = "vehicles10"
    summary = "Vehicles-10: CIFAR-100's 10 vehicle classes (5k/1k), from the CIFAR-100 pickles under root"
    num_classes = 10
    release = "cifar100"
    noise_kinds = ("none", "symmetric", "uniform")
    default_noise = ("symmetric", (0.0, 0.4))  # the rates of GR Table 9 / DM Table 8
    stats = CIFAR100_STATS
    parameters = cifar_parameters("resnet44", "dm_30k", "cifar-100-python")
    presets = {
        "dm_resnet44_30k": Preset(
            {"model": "resnet44", "training": "dm_30k"},
            "GR appendix C / DM appendix (ResNet-44); schedule assumed from DM §4.2.1",
            "ResNet-44, batch 256, lr 0.1 ÷10 at 15k/22k, 30k iterations",
        ),
        "smoke": Preset({"model": "resnet20", "training": "smoke"}, "", "ResNet-20, 200 iterations: a pipeline check"),
    }

    def load(self) -> CifarData:
        data = read_cifar("cifar100", self.root, self.download)
        superclasses = {data.coarse_names[c] for c in data.coarse_of[list(VEHICLE_FINE_IDS)]}
        if superclasses != set(VEHICLE_SUPERCLASSES):
            raise DatasetError(
                f"CIFAR-100 under {self.root} puts fine classes {VEHICLE_FINE_IDS} in superclasses "
                f"{sorted(superclasses)}, not {list(VEHICLE_SUPERCLASSES)}: this is not the official release"
            )
        relabel = np.full(len(data.class_names), -1, dtype=np.int64)
        relabel[list(VEHICLE_FINE_IDS)] = np.arange(len(VEHICLE_FINE_IDS))
        y_train, y_test = relabel[data.y_train], relabel[data.y_test]
        train, test = y_train >= 0, y_test >= 0
        return CifarData(
            x_train=data.x_train[train],
            y_train=y_train[train],
            x_test=data.x_test[test],
            y_test=y_test[test],
            class_names=tuple(data.class_names[f] for f in VEHICLE_FINE_IDS),
        )


@hookimpl
def register_tasks(register):
    register(Vehicles10)
