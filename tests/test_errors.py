from restransfer.errors import as_sentence


def test_as_sentence_ends_with_one_period_on_one_bounded_line():
    assert as_sentence("call `enable_unsafe_deserialization()`.") == "call `enable_unsafe_deserialization()`."
    assert as_sentence("no period") == "no period."
    assert as_sentence("two\n\nlines.") == "two lines."
    long = as_sentence("x" * 1000, limit=50)
    assert len(long) == 50 and long.endswith("...")
    assert as_sentence("") == "no details."
