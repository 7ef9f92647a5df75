"""The digits task reads its data and its fixed split without importing scikit-learn; both must
equal what scikit-learn itself returns, array for array."""

import subprocess
import sys

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from benchsuite_plugins.digits import digits


def test_the_shipped_split_is_sklearns_stratified_split():
    bunch = load_digits()
    expected = train_test_split(
        (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64),
        test_size=digits.TEST_FRACTION, stratify=bunch.target, random_state=digits.SPLIT_SEED,
    )  # fmt: skip
    x_train, x_test, y_train, y_test = expected
    got = digits.load_split()
    for mine, theirs in zip(got, (x_train, y_train, x_test, y_test)):
        assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs)
    assert len(got[0]) == 1347 and len(got[2]) == 450


def test_loading_the_digits_does_not_import_sklearn():
    code = "import sys; from benchsuite_plugins.digits.digits import load_split; load_split(); print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
