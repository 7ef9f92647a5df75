"""The toolkit for task authors: what several task plugins share, documented for third-party tasks.

* ``labels``: the label pipeline every task with labels runs (hold out a clean validation split,
  hold out a trusted set, corrupt the rest, record the noise as realised), ``split_labels``;
  ``benchsuite.prepare_in_memory`` runs it for data sets that fit in memory;
* ``datasets``: readers' shared error type (``DatasetError``: what is missing where, how to get it);
* ``augment``: batched pad-crop-flip and Cutout of uint8 image batches on the device;
  ``strong_augment``: the strong view of consistency methods (AutoAugment + the weak view + Cutout);
* ``retrieval``: CMC and mAP under torchreid's and the official MARS rules, batched;
* ``extras``: packages only some tasks need (benchsuite's extras): ``missing_extra`` for a task's
  ``available()``, ``require_extra`` before the code that imports them;
* ``models``: networks several tasks share (an MLP, an embedding classifier, input normalisation as
  a first layer, torchvision backbones with weights read from disk).

Code that serves one task family lives with that family in ``benchsuite_plugins``.
"""
