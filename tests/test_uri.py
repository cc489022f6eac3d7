"""URI parsing: a table of valid and invalid forms."""

import pytest

from ember import URI
from ember.errors import InvalidURIError

VALID = [
    # text, (protocol, object, sockname, host, port), str form
    ("PYRO:obj@localhost:9999", ("PYRO", "obj", None, "localhost", 9999), None),
    ("pyro:obj@127.0.0.1:0", ("PYRO", "obj", None, "127.0.0.1", 0), "PYRO:obj@127.0.0.1:0"),
    ("PYRO:obj@[::1]:9999", ("PYRO", "obj", None, "::1", 9999), None),
    ("PYRO:obj@[fe80::1%2]:9", ("PYRO", "obj", None, "fe80::1%2", 9), None),
    ("PYRO:obj@./u:/tmp/my sock", ("PYRO", "obj", "/tmp/my sock", None, None), None),
    ("PYRO:obj@./u:\0abstract", ("PYRO", "obj", "\0abstract", None, None), None),
    ("PYRONAME:my.obj", ("PYRONAME", "my.obj", None, None, None), None),
    ("PYRONAME:my.obj@nshost", ("PYRONAME", "my.obj", None, "nshost", 9090), "PYRONAME:my.obj@nshost:9090"),
    ("PYRONAME:my.obj@nshost:1234", ("PYRONAME", "my.obj", None, "nshost", 1234), None),
    ("PYROMETA:tag1,tag2", ("PYROMETA", "tag1,tag2", None, None, None), None),
    ("PYROMETA:t@[::1]:5", ("PYROMETA", "t", None, "::1", 5), None),
    ("PYROLOC:name@host:7766", ("PYROLOC", "name", None, "host", 7766), None),
    ("PYROLOC://host:7766/name", ("PYROLOC", "name", None, "host", 7766), "PYROLOC:name@host:7766"),
]

INVALID = [
    ("", "missing protocol"),
    ("obj@host:1", "missing protocol"),
    ("PYROX:obj@host:1", "unknown protocol 'PYROX'"),
    ("PYRO:obj", "needs a location"),
    ("PYRO:@host:1", "object part"),
    ("PYRO:obj@host", "missing port"),
    ("PYRO:obj@host:abc", "port 'abc' is not a number"),
    ("PYRO:obj@host:70000", "out of range"),
    ("PYRO:obj@::1:80", "IPv6 addresses must be written in brackets"),
    ("PYRO:obj@[::1:80", "unclosed"),
    ("PYRO:obj@[zz::1]:80", "is not an IPv6 address"),
    ("PYRO:obj@[::1]x", "unexpected"),
    ("PYRO:obj@:80", "empty host"),
    ("PYRO:obj@./u:", "empty unix socket path"),
    ("PYROMETA:a,,b", "empty metadata tag"),
    ("PYRO:my obj@host:1", "object part"),
    ("PYRO:a@b@host:1", "cannot contain '@'"),  # issue 14: was accepted with host 'b@host' (unusable)
]


@pytest.mark.parametrize("text, state, str_form", VALID)
def test_valid(text, state, str_form):
    uri = URI(text)
    assert uri.state() == state
    assert str(uri) == (str_form or text)
    assert URI(str(uri)) == uri and hash(URI(str(uri))) == hash(uri)


@pytest.mark.parametrize("text, message", INVALID)
def test_invalid(text, message):
    with pytest.raises(InvalidURIError, match=message.replace("[", r"\[").replace("(", r"\(")):
        URI(text)


def test_invalid_is_also_value_error_and_type_checked():
    with pytest.raises(ValueError):
        URI("nonsense")
    with pytest.raises(InvalidURIError, match="must be a string"):
        URI(42)


def test_copy_and_metadata_and_immutability():
    u = URI("PYROMETA:a,b")
    assert URI(u) == u and u.metadata == {"a", "b"} and u.is_magic
    assert not URI("PYRO:x@h:1").is_magic
    with pytest.raises(AttributeError):
        u.object = "x"
    assert URI("PYRO:x@h:1") != URI("PYRO:x@h:2")
    assert len({URI("PYRO:x@h:1"), URI("pyro:x@h:1")}) == 1
