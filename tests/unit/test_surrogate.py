"""proxy.cache.surrogate: Surrogate-Key / Cache-Tag parsing, stripping, the reverse index."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.cache.surrogate import ReverseIndex, strip_surrogate_fields, surrogate_keys


def test_surrogate_key_splits_on_spaces_and_cache_tag_on_commas() -> None:
    headers = [("Surrogate-Key", " a  b\tc "), ("cache-tag", "d, e ,,f"), ("X", "g")]
    assert surrogate_keys(headers) == {"a", "b", "c", "d", "e", "f"}


def test_too_many_or_too_long_names_are_bounded() -> None:
    many = " ".join(f"k{i}" for i in range(1000))
    assert len(surrogate_keys([("Surrogate-Key", many)])) == 256
    assert surrogate_keys([("Surrogate-Key", "x" * 2000)]) == frozenset()


def test_strip_removes_only_the_surrogate_lines() -> None:
    head = b"HTTP/1.1 200 OK\r\nSurrogate-Key: a\r\nX-Tag: 1\r\ncache-tag: b\r\nVia: 1.1 c\r\n"
    assert strip_surrogate_fields(head) == b"HTTP/1.1 200 OK\r\nX-Tag: 1\r\nVia: 1.1 c\r\n"
    plain = b"HTTP/1.1 200 OK\r\nX: y\r\n"
    assert strip_surrogate_fields(plain) is plain


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abcde"), st.frozensets(st.sampled_from("pqrs"))), max_size=30
    )
)
def test_reverse_index_matches_a_dict_model(ops: list[tuple[str, frozenset[str]]]) -> None:
    index = ReverseIndex()
    model: dict[str, frozenset[str]] = {}
    for key, names in ops:
        index.set(key, names)
        model[key] = names
        if key == "e":
            index.remove(key)
            model.pop(key)
    for name in "pqrs":
        assert index.keys_for(name) == {k for k, ns in model.items() if name in ns}
