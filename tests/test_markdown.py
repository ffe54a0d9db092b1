"""The one markdown-table writer of the reports."""

from urbangen.markdown import table


def test_a_table_is_a_header_a_rule_and_one_line_per_row():
    assert table(["city", "tiles"], [["osterbro", 65], ["kennesaw", 235]]) == [
        "| city | tiles |", "|---|---|", "| osterbro | 65 |", "| kennesaw | 235 |"]
    assert table(["a", "b", "c"], []) == ["| a | b | c |", "|---|---|---|"]
