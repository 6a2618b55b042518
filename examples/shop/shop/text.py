"""Formatting for receipts."""


def money(amount):
    return f"{amount:,.2f} EUR"


def receipt_line(name, amount):
    return f"{name:<20}{money(amount):>16}"
