from shop.pricing import apply_discount, bulk_discount, line_total


def test_apply_discount():
    assert apply_discount(200, 25) == 150


def test_bulk_discount_tiers():
    assert bulk_discount(1) == 0
    assert bulk_discount(10) == 5
    assert bulk_discount(50) == 10


def test_line_total_uses_bulk_discount():
    assert line_total(2.0, 60) == 108.0
