"""A cart of (unit price, quantity) lines."""

from shop.pricing import line_total, with_tax


class Cart:
    def __init__(self):
        self.lines = []

    def add(self, unit_price, quantity=1):
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        self.lines.append((unit_price, quantity))

    def subtotal(self):
        total = 0
        for unit_price, quantity in self.lines:
            total += line_total(unit_price, quantity)
        return round(total, 2)

    def total(self):
        return with_tax(self.subtotal())
