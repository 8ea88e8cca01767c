import pytest

from kenprune.errors import KenpruneError
from kenprune.registry import Registry


def test_registry_resolves_names_in_order_and_lists_them_on_error():
    reg: Registry[int] = Registry("widget")
    reg.add("a", 1, "first")

    @reg.register("b", help="second")
    def _b():
        return 2

    assert reg.get("a") == 1 and reg.get("b") is _b
    assert reg.names() == ["a", "b"]
    assert "a" in reg and "z" not in reg
    with pytest.raises(KenpruneError, match=r"unknown widget 'z'; choose one of: a, b"):
        reg.get("z")
    with pytest.raises(ValueError):
        reg.add("a", 3)
