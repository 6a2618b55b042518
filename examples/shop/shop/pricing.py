"""Prices, discounts and carts for a small shop."""

TAX_RATE = 0.2


def apply_discount(price, percent):
    """Price after taking `percent` percent off."""
    return price * (1 - percent / 100)


def bulk_discount(quantity):
    """Percent off for buying many: 5 % from 10 items, 10 % from 50."""
    if quantity > 50:
        return 10
    if quantity >= 10:
        return 5
    return 0


def line_total(unit_price, quantity):
    percent = bulk_discount(quantity)
    return round(apply_discount(unit_price * quantity, percent), 2)


def with_tax(amount):
    return round(amount * (1 + TAX_RATE), 2)
