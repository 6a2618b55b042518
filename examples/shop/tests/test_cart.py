import pytest

from shop.cart import Cart


def test_empty_cart_totals_zero():
    assert Cart().total() == 0


def test_cart_total_with_tax():
    cart = Cart()
    cart.add(10.0, 2)
    cart.add(1.0, 10)
    assert cart.total() == 35.4


def test_rejects_zero_quantity():
    with pytest.raises(ValueError):
        Cart().add(5.0, 0)
