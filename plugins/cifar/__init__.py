"""The CIFAR task family: cifar10, cifar100 and vehicles10, with their reader, networks and recipes."""
