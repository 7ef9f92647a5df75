import pytest

from benchsuite.params import Configurable, Param, ParameterError, ParamSpace, Preset


class Toy(Configurable):
    name = "toy"
    parameters = {
        "q": Param(0.7, "exponent", low=0.0, high=1.0, low_open=True),
        "k": Param(3, "count", low=1),
        "mode": Param("a", "mode", choices=("a", "b")),
        "flag": Param(False, "a switch"),
        "root": Param(None, "data root", type=str, nullable=True, identity=False),
    }
    presets = {"paper": Preset({"q": 0.5, "mode": "b"}, source="Paper, Table 1")}


def test_defaults_preset_and_overrides_resolve_in_order():
    assert Toy().config == {"q": 0.7, "k": 3, "mode": "a", "flag": False, "root": None}
    toy = Toy(preset="paper", k=5)
    assert (toy.q, toy.k, toy.mode) == (0.5, 5, "b")
    assert toy.identity_config() == {"q": 0.5, "k": 5, "mode": "b", "flag": False}


def test_int_is_accepted_for_float_and_integral_float_for_int():
    toy = Toy(q=1, k=2.0)
    assert toy.q == 1.0 and isinstance(toy.q, float)
    assert toy.k == 2 and isinstance(toy.k, int)


@pytest.mark.parametrize(
    "values, fragment",
    [
        ({"q": 0.0}, "parameter 'q' = 0.0 is out of range; allowed: float, 0 < x ≤ 1"),
        ({"q": 1.5}, "parameter 'q' = 1.5 is out of range"),
        ({"q": float("nan")}, "is not finite"),
        ({"k": 0}, "parameter 'k' = 0 is out of range; allowed: int, x ≥ 1"),
        ({"k": 2.5}, "parameter 'k' = 2.5 is not an int"),
        ({"k": True}, "is not an int"),
        ({"mode": "c"}, "parameter 'mode' = 'c' is not allowed; allowed: one of 'a', 'b'"),
        ({"flag": 1}, "is not a bool"),
        ({"qq": 1}, "unknown parameter 'qq'; did you mean 'q'?"),
        ({"q": None}, "may not be None"),
    ],
)
def test_errors_name_the_parameter_the_value_and_what_is_allowed(values, fragment):
    with pytest.raises(ParameterError) as err:
        Toy(**values)
    assert fragment in str(err.value)
    assert str(err.value).startswith("toy: ")


def test_unknown_preset_lists_close_matches():
    with pytest.raises(ParameterError, match="unknown preset 'papr'; did you mean 'paper'"):
        Toy(preset="papr")


def test_declaration_check_catches_bad_defaults_and_presets():
    with pytest.raises(ParameterError, match="'q' = 2.0 is out of range"):
        ParamSpace("bad", {"q": Param(2.0, high=1.0)}).check_declaration()
    with pytest.raises(ParameterError, match="preset 'p' sets unknown parameter 'z'"):
        ParamSpace("bad", {"q": Param(0.5)}, {"p": Preset({"z": 1})}).check_declaration()
