"""The command-output table renderer: columns line up on a terminal, Chinese text too."""

from __future__ import annotations

from obs_sync.commands.table import display_width, table_lines


def test_wide_characters_take_two_columns() -> None:
    assert display_width("被叫无应答") == 10
    assert display_width("ACD超时") == 7
    assert display_width("e\u0301") == 1  # a combining accent takes none
    assert display_width("The switch is busy.") == 19


def test_columns_after_chinese_text_line_up() -> None:
    lines = table_lines(
        ["zh", "en"],
        [["被叫无应答", "No answer."], ["传真音", "Fax tone."], ["ACD超时", "ACD timeout."]],
        rule=True,
    )
    assert lines == [
        "zh          en",
        "----------  ------------",
        "被叫无应答  No answer.",
        "传真音      Fax tone.",
        "ACD超时     ACD timeout.",
    ]
    # The second column starts at the same terminal column on every line.
    assert {display_width(line.rsplit("  ", 1)[0]) for line in lines} == {10}
