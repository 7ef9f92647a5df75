"""cifar10: CIFAR-10 (50,000 train / 10,000 test, 32×32 RGB, 10 classes) from the python pickles.

Defaults follow He et al.'s CIFAR recipe as the IMAE/GR/DM papers train ResNet-56: batch 128,
lr 0.1 ÷10 at 32k and 48k iterations, 64k iterations. Class indices are the release's: 0 airplane,
1 automobile, 2 bird, 3 cat, 4 deer, 5 dog, 6 frog, 7 horse, 8 ship, 9 truck.
"""

from __future__ import annotations

from benchsuite import Preset, hookimpl
from benchsuite_plugins.cifar.base import CIFAR10_STATS, CifarTask, cifar_parameters
from benchsuite_plugins.cifar.cifar_n import CIFAR10N
from benchsuite_plugins.cifar.release import CifarData, read_cifar


class Cifar10(CifarTask):
    name = "cifar10"
    summary = "CIFAR-10 (10 classes, 50k/10k) from the python pickles under root; CIFAR ResNets, WRN, GoogLeNet"
    num_classes = 10
    release = "cifar10"
    noise_kinds = ("none", "symmetric", "uniform", "cifar10_asymmetric", *CIFAR10N.kind_names())
    default_noise = ("symmetric", (0.0, 0.2, 0.4, 0.8))  # the rates of DM Table 2
    stats = CIFAR10_STATS
    human_release = CIFAR10N
    parameters = cifar_parameters("resnet56", "he_64k", "cifar-10-batches-py", CIFAR10N)
    presets = {
        "he_resnet56_64k": Preset(
            {"model": "resnet56", "training": "he_64k"},
            "He et al. 2016 §4.2; IMAE T study (ResNet-56, 64k iterations)",
            "ResNet-56, batch 128, lr 0.1 ÷10 at 32k/48k, 64k iterations",
        ),
        "he_resnet56_100k": Preset(
            {"model": "resnet56", "training": "he_100k"},
            "GR/DM ResNet-56 training curves (drops at 32k/48k, run to 100k)",
            "ResNet-56, batch 128, lr 0.1 ÷10 at 32k/48k, 100k iterations",
        ),
        "dm_googlenet": Preset(
            {"model": "googlenet", "training": "dm_30k"},
            "DM §4.2.2 (MentorNet setting; optimiser as their CIFAR-100 runs)",
            "GoogLeNet V1 (torchvision, 32×32 stem), batch 256, lr 0.1 ÷10 at 15k/22k, 30k iterations",
        ),
        "cifar_n_resnet34": Preset(
            {"model": "resnet34", "training": "cifar_n_100ep"},
            "Wei et al. 2022 (ICLR), CIFAR-10N: the CE baseline of the official starter code (github.com/UCSC-REAL/cifar-10-100n, main.py)",
            "ResNet-34, batch 128, SGD momentum 0.9, wd 5e-4, lr 0.1 ÷10 after 60 of 100 epochs",
        ),
        "smoke": Preset({"model": "resnet20", "training": "smoke"}, "", "ResNet-20, 200 iterations: a pipeline check"),
    }

    def load(self) -> CifarData:
        return read_cifar("cifar10", self.root, self.download)


@hookimpl
def register_noise_kinds(register):
    for name, kind in CIFAR10N.noise_kinds().items():
        register(name, kind)


@hookimpl
def register_tasks(register):
    register(Cifar10)
