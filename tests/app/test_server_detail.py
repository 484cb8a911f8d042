"""The visitor's short line for something the server lacks; the detail goes to the log."""

from __future__ import annotations

import logging

import pytest

from saganet.app.server_detail import server_detail
from saganet.errors import UserInputError

LOG = logging.getLogger("saganet.test.server_detail")


def test_the_visitor_reads_the_short_line_and_the_log_keeps_the_detail(caplog):
    detail = "/srv/cache/model.safetensors is missing"
    caplog.set_level(logging.WARNING, logger=LOG.name)
    with (pytest.raises(UserInputError) as raised,
          server_detail(LOG, "the model was asked for", "the model is not available here")):
        raise UserInputError(detail)
    assert str(raised.value) == "the model is not available here"
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        (LOG.name, logging.WARNING, f"the model was asked for: {detail}")]


def test_other_errors_and_success_pass_through(caplog):
    with server_detail(LOG, "asked", "short"):
        value = 3
    assert value == 3
    with pytest.raises(KeyError), server_detail(LOG, "asked", "short"):
        raise KeyError("bug")
    assert not caplog.records
