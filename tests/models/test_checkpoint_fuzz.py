"""Structural fuzzing of model.pt dicts: every entry replaced by every JSON type (and removed). The one
schema check either refuses the dict with one CheckpointError line, or everything downstream that reads
it works (the model builds, --resume's settings derive, the metrics serialise)."""

import copy
import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vae_edge.models import CheckpointError, check_checkpoint, model_from_checkpoint, read_checkpoint
from vae_edge.trainer.resume import resume_settings

# One value of each JSON type (plus a negative number, an infinite one and an escape sequence).
JSON_TYPES = [None, True, -1, 2.5, float("inf"), "x\x1b[2J", [1, "a"], {"k": [None]}]


def _paths(node, prefix=()):
    """Every key path in the dict (tensors are leaves; state_dict keys too)."""
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield from _paths(child, (*prefix, key))


@pytest.fixture(scope="module")
def ckpt(model_path):
    return read_checkpoint(model_path)


def p_first(ckpt, section):
    node = ckpt[section[0]][section[1]]
    return next(iter(node)) if isinstance(node, dict) else 0


def _replaced(ckpt, path, value):
    out = copy.deepcopy(ckpt)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    if value is ...:
        if isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    else:
        parent[path[-1]] = copy.deepcopy(value)
    return out


def _accepted_or_refused(edited, build=True):
    try:
        check_checkpoint(edited, "model.pt")
    except CheckpointError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("model.pt: ")
        return False
    if not build:  # the model depends on config and state_dict only
        resume_settings(edited)
        json.dumps(edited.get("metrics"), allow_nan=True)
        return True
    try:
        model_from_checkpoint(edited, "model.pt")
    except CheckpointError as exc:  # e.g. NaN weights: still one line
        assert "\n" not in str(exc)
        return False
    resume_settings(edited)
    json.dumps(edited.get("metrics"), allow_nan=True)
    return True


def test_every_entry_replaced_by_every_json_type(ckpt):
    paths = [p for p in _paths(ckpt) if p and p[0] != "state_dict" or len(p) == 2]
    # One history row, one optimizer state and one parameter group stand for all of their kind.
    paths = [p for p in paths if not (len(p) > 2 and p[:2] in (("train_state", "history"), ("optimizer", "state"), ("optimizer", "param_groups")) and p[2] != p_first(ckpt, p[:2]))]
    accepted = 0
    for path in paths:
        for value in [*JSON_TYPES, ...]:
            accepted += _accepted_or_refused(_replaced(ckpt, path, value), build=path[0] in ("config", "state_dict"))
    assert accepted  # some edits are harmless (a metric's value, an optional entry removed)


ckpt_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 2**70), st.floats(), st.text(max_size=5), st.just(torch.zeros(2))),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=5,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_several_entries_replaced_by_nested_values(ckpt, data):
    edited = copy.deepcopy(ckpt)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(edited) if p]
        path = data.draw(st.sampled_from(paths))
        try:
            edited = _replaced(edited, path, data.draw(ckpt_values))
        except (KeyError, IndexError, TypeError):
            continue
    _accepted_or_refused(edited)
