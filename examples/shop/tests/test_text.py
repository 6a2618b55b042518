from shop.text import money, receipt_line


def test_money():
    assert money(1234.5) == "1,234.50 EUR"


def test_receipt_line_width():
    assert len(receipt_line("apples", 3.0)) == 36
