"""cifar100: CIFAR-100 (50,000 train / 10,000 test, 100 fine classes in 20 superclasses).

Defaults follow the DM paper's CIFAR-100 protocol (after SL): ResNet-44, batch 256, lr 0.1 ÷10 at
15k and 22k iterations, 30k iterations. Fine class indices are the release's, alphabetical by
name, so a block of 5 consecutive indices is not a superclass; the true superclass of every class
comes from the pickles' coarse labels and feeds ``cifar100_superclass_pairswap`` noise.
"""

from __future__ import annotations

from benchsuite import Preset, hookimpl
from benchsuite_plugins.cifar.base import CIFAR100_STATS, CifarTask, cifar_parameters
from benchsuite_plugins.cifar.cifar_n import CIFAR100N
from benchsuite_plugins.cifar.release import CifarData, read_cifar


class Cifar100(CifarTask):
    name = "cifar100"
    summary = "CIFAR-100 (100 classes, 50k/10k) from the python pickles under root, coarse labels included"
    num_classes = 100
    release = "cifar100"
    noise_kinds = (
        "none",
        "symmetric",
        "uniform",
        "cifar100_block5_pairswap",
        "cifar100_block5_circular",
        "cifar100_superclass_pairswap",
        *CIFAR100N.kind_names(),
    )
    default_noise = ("symmetric", (0.0, 0.2, 0.4, 0.6))  # the rates of DM Table 1
    stats = CIFAR100_STATS
    human_release = CIFAR100N
    parameters = cifar_parameters("resnet44", "dm_30k", "cifar-100-python", CIFAR100N)
    presets = {
        "dm_resnet44_30k": Preset(
            {"model": "resnet44", "training": "dm_30k"},
            "DM §4.2.1 (settings of SL, Wang et al. 2019)",
            "ResNet-44, batch 256, lr 0.1 ÷10 at 15k/22k, 30k iterations",
        ),
        "cifar_n_resnet34": Preset(
            {"model": "resnet34", "training": "cifar_n_100ep"},
            "Wei et al. 2022 (ICLR), CIFAR-100N: the CE baseline of the official starter code (github.com/UCSC-REAL/cifar-10-100n, main.py)",
            "ResNet-34, batch 128, SGD momentum 0.9, wd 5e-4, lr 0.1 ÷10 after 60 of 100 epochs",
        ),
        "smoke": Preset({"model": "resnet20", "training": "smoke"}, "", "ResNet-20, 200 iterations: a pipeline check"),
    }

    def load(self) -> CifarData:
        return read_cifar("cifar100", self.root, self.download)


@hookimpl
def register_noise_kinds(register):
    for name, kind in CIFAR100N.noise_kinds().items():
        register(name, kind)


@hookimpl
def register_tasks(register):
    register(Cifar100)
